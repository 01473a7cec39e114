"""Item query tokens: an item's vectors, handed to the client so it can search the item again
(other weights, filters or top_k) without sending the photo again and without a model call.

A token is "v1." + base64url of the float32 `shape` and `color` vectors. It carries nothing the
client could not learn from the scores, and a forged one can only search with other vectors.
"""

from __future__ import annotations

import base64
import binascii
from http import HTTPStatus

import numpy as np

from lookalike.api.errors import ApiError

PREFIX = "v1."


def encode(shape: np.ndarray, color: np.ndarray) -> str:
    packed = np.concatenate([shape, color]).astype("<f4").tobytes()
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
    expected = 4 * (dims["shape"] + dims["color"])
    if len(packed) != expected:
        raise _invalid(f"holds {len(packed)} bytes, not the {expected} of this server's embedder")
    vector = np.frombuffer(packed, "<f4").astype(np.float32)
    shape, color = vector[: dims["shape"]], vector[dims["shape"] :]
    if not np.isfinite(vector).all() or not (np.linalg.norm(shape) > 0 and np.linalg.norm(color) > 0):
        raise _invalid("holds a zero or non-finite vector")
    return {"shape": shape[None, :], "color": color[None, :]}


def _invalid(why: str) -> ApiError:
    return ApiError(
        HTTPStatus.UNPROCESSABLE_ENTITY,
        "invalid_field",
        f"query {why}; use an item's `query` from a /search response of this server",
        field="query",
    )
