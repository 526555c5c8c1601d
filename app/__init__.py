"""Species identification service: photo in, ranked species out."""

__version__ = "0.1.0"
