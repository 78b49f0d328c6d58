"""Command-line interface (typer). Commands import heavy modules inside their bodies."""
