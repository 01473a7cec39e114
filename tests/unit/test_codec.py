import numpy as np
import pytest

from lookalike import codec


def test_l2_normalize_gives_unit_rows_and_survives_zero_rows():
    vectors = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    normalized = codec.l2_normalize(vectors)
    assert np.allclose(normalized[0], [0.6, 0.8])
    assert np.all(np.isfinite(normalized[1]))


def test_binarize_packs_signs_into_bytes():
    vector = np.array([[1, -1, 1, -1, -1, -1, -1, 1] * 16], dtype=np.float32)
    codes = codec.binarize(vector)
    assert codes.shape == (1, 16) and codes.dtype == np.uint8
    assert codes[0, 0] == 0b10100001


def test_unpack_inverts_binarize_up_to_sign():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(5, 128))
    assert np.array_equal(codec.unpack(codec.binarize(vectors)), np.where(vectors > 0, 1.0, -1.0))


def test_binarize_rejects_lengths_not_multiple_of_8():
    with pytest.raises(ValueError, match="multiple of 8"):
        codec.binarize(np.ones((1, 12)))


def test_hamming_distance_and_similarity():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(4, 128))
    codes = codec.binarize(vectors)
    flipped = codec.binarize(-vectors)
    distances = codec.hamming_distance(codes, codes)
    assert np.all(np.diag(distances) == 0)
    assert np.all(codec.hamming_distance(codes, flipped).diagonal() == 128)
    assert np.allclose(codec.hamming_similarity(codes, codes).diagonal(), 1.0)
    bits = (codec.unpack(codes[:1]) != codec.unpack(codes[1:2])).sum()
    assert distances[0, 1] == bits


def test_hex_round_trip():
    codes = codec.binarize(np.random.default_rng(2).normal(size=(3, 128)))
    hex_codes = codec.to_hex(codes)
    assert all(len(code) == 32 for code in hex_codes)
    assert np.array_equal(codec.from_hex(hex_codes), codes)


def test_codes_keep_neighbours_of_normalised_vectors():
    # Sign codes of random projections approximate angles: the nearest code is the nearest vector.
    rng = np.random.default_rng(3)
    catalogue = codec.l2_normalize(rng.normal(size=(200, 128)))
    queries = codec.l2_normalize(catalogue[:20] + 0.1 * rng.normal(size=(20, 128)))
    nearest = codec.hamming_distance(codec.binarize(queries), codec.binarize(catalogue)).argmin(axis=1)
    assert np.array_equal(nearest, np.arange(20))
