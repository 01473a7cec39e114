"""The embedder: shape and colour/pattern vectors of one garment image."""
