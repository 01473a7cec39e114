"""Vector codec: L2-normalised float embeddings <-> packed binary codes.

A 128-d vector becomes a 128-bit code (16 bytes) by the sign of each component; codes are
compared by Hamming distance. Qdrant's binary quantisation uses the same sign rule.
"""

from __future__ import annotations

import numpy as np


def l2_normalize(vectors: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, eps)


def binarize(vectors: np.ndarray) -> np.ndarray:
    """(n, d) floats -> (n, d/8) uint8 codes; bit i is set where component i is positive."""
    vectors = np.asarray(vectors)
    if vectors.shape[-1] % 8:
        raise ValueError(f"code length must be a multiple of 8, got {vectors.shape[-1]}")
    return np.packbits(vectors > 0, axis=-1)


def unpack(codes: np.ndarray) -> np.ndarray:
    """(n, d/8) uint8 codes -> (n, d) vectors of +1/-1, for cosine-style scoring."""
    bits = np.unpackbits(np.asarray(codes, dtype=np.uint8), axis=-1)
    return bits.astype(np.float32) * 2.0 - 1.0


def hamming_distance(queries: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """(q, b) and (n, b) packed codes -> (q, n) numbers of differing bits."""
    xor = np.bitwise_xor(np.asarray(queries, np.uint8)[:, None, :], np.asarray(codes, np.uint8)[None, :, :])
    return np.unpackbits(xor, axis=-1).sum(axis=-1, dtype=np.int32)


def hamming_similarity(queries: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """1 - distance / bits: 1 for equal codes, 0 for opposite ones."""
    bits = np.asarray(codes).shape[-1] * 8
    return 1.0 - hamming_distance(queries, codes) / bits


def to_hex(codes: np.ndarray) -> list[str]:
    return [bytes(code).hex() for code in np.asarray(codes, dtype=np.uint8)]


def from_hex(hex_codes: list[str]) -> np.ndarray:
    return np.stack([np.frombuffer(bytes.fromhex(code), dtype=np.uint8) for code in hex_codes])
