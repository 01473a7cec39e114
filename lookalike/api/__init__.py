"""The HTTP plumbing of the public API: errors, request parsing, request ids, metrics.

The endpoints themselves live in `service.py` (FastAPI routes on the BentoML service class, mounted
at the root by `bentoml.asgi_app`); the model services (`bentos/`) keep BentoML's batched APIs.
"""
