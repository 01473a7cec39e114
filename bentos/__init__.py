"""BentoML services ("runners"), one per file; `service.py` at the top level composes them."""
