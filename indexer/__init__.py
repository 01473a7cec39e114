"""Catalogue ingestion: shop feeds and folders -> images -> embedder -> vector store."""
