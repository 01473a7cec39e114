"""Training, evaluation and export of Lookalike's models (torch; never imported by serving)."""
