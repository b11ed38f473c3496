"""fastpost version string (the only thing in this module)."""

__version__ = "0.1.0"
