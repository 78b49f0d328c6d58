"""Data shipped with the package: the verify policy's calibration table (``verify_calibration.json``)
and the router policy's default router (``router/``, a folder from ``arbitrage train-router``)."""
