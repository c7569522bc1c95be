"""The package version (one place, read by the user agent and provenance)."""

__version__ = "0.1.0"
