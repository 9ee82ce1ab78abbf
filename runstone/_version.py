"""The package version (layer 1, no imports)."""

__version__ = "0.1.0"
