"""Item query tokens: an item's vectors, handed to the client so it can search the item again
(other weights, filters or top_k) without sending the photo again and without a model call.

A token is "v1." + base64url of the item's float32 vectors (`shape`, `color`, and `detail` for
embedders that make it), in the embedder card's order. It carries nothing the
client could not learn from the scores, and a forged one can only search with other vectors.
"""

from __future__ import annotations

import base64
import binascii
from http import HTTPStatus

import numpy as np

from lookalike.api.errors import ApiError

PREFIX = "v1."


def encode(vectors: list[np.ndarray]) -> str:
    """One item's vectors, in the card's order (`EmbedderCard.vector_names`)."""
    packed = np.concatenate(vectors).astype("<f4").tobytes()
    return PREFIX + base64.urlsafe_b64encode(packed).decode().rstrip("=")


def decode(token: str, dims: dict[str, int]) -> dict[str, np.ndarray]:
    """The (1, d) vectors of `token`; a 422 naming `query` if it is not one of ours for these dims."""
    if not token.startswith(PREFIX):
        raise _invalid("does not start with v1.")
    body = token.removeprefix(PREFIX)
    try:
        packed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise _invalid("is not base64url") from None
    expected = 4 * sum(dims.values())
    if len(packed) != expected:
        raise _invalid(f"holds {len(packed)} bytes, not the {expected} of this server's embedder")
    vector = np.frombuffer(packed, "<f4").astype(np.float32)
    vectors, start = {}, 0
    for name, size in dims.items():
        vectors[name] = vector[None, start : start + size]
        start += size
    if not np.isfinite(vector).all() or not all(np.linalg.norm(v) > 0 for v in vectors.values()):
        raise _invalid("holds a zero or non-finite vector")
    return vectors


def _invalid(why: str) -> ApiError:
    return ApiError(
        HTTPStatus.UNPROCESSABLE_ENTITY,
        "invalid_field",
        f"query {why}; use an item's `query` from a /search response of this server",
        field="query",
    )
