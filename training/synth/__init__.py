"""Synthetic data: garment masks, repainting, photo-like views and composed scenes."""
