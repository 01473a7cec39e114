"""Lookalike: find the same or similar clothes, shoes and bags in shop catalogues from a photo."""

__version__ = "0.1.0"
