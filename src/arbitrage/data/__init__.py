"""Data shipped with the package (the verify policy's calibration table, when measured)."""
