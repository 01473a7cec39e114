import cv2
import imagehash
import numpy as np
import pytest
from PIL import Image

from training.embedder.baselines import FeatureCache, HsvHistogram, build_baselines, pack_hash, pixel_digests
from training.embedder.retrieval import Features, similarity


def solid(rgb, side=32):
    return np.full((side, side, 3), rgb, np.uint8)


def blobs(seed, side=224):
    """A seeded picture of smooth colour blobs and a few edges, something for every hash to see."""
    rng = np.random.default_rng(seed)
    grid = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    image = cv2.resize(grid, (side, side), interpolation=cv2.INTER_CUBIC)
    size = side // 4
    for _ in range(4):
        corner = rng.integers(0, side - size, 2)
        cv2.rectangle(
            image, tuple(map(int, corner)), tuple(map(int, corner + size)), rng.integers(0, 256, 3).tolist(), -1
        )
    return image


def features(baseline, images):
    return Features(baseline(np.stack(images)), baseline.metric)


def test_hsv_histogram_of_one_colour_is_identical_and_of_another_colour_lower():
    hsv = HsvHistogram()
    vectors = features(hsv, [solid((200, 30, 35)), solid((205, 28, 30)), solid((35, 85, 190))])
    reds = similarity(vectors[:1], vectors[1:])[0]
    assert np.isclose(reds[0], 1.0) and reds[1] < 0.5


def test_hsv_histogram_is_a_bhattacharyya_coefficient():
    hsv = HsvHistogram(bins=(8, 4, 4))
    half = np.concatenate([solid((200, 30, 35))[:16], solid((35, 85, 190))[16:]])  # half red, half blue
    vectors = hsv(np.stack([half, solid((200, 30, 35))]))
    assert vectors.shape == (2, 128)
    assert np.allclose((vectors**2).sum(axis=1), 1.0)  # square roots of an L1-normalised histogram
    assert np.isclose(vectors[0] @ vectors[1], np.sqrt(0.5))  # sum sqrt(p q) = sqrt(0.5 * 1)


@pytest.mark.parametrize("name", ["phash", "dhash", "whash", "colorhash", "hsv"])
def test_a_slightly_blurred_copy_is_nearer_than_an_unrelated_image(name):
    (baseline,) = build_baselines([name], work_dir=None)
    image = blobs(0)
    blurred = cv2.GaussianBlur(image, (0, 0), 1.0)
    others = [blobs(seed) for seed in range(1, 6)]
    vectors = features(baseline, [image, blurred, *others])
    scores = similarity(vectors[:1], vectors[1:])[0]
    assert scores[0] > scores[1:].max()


def test_packed_hash_distance_equals_imagehash_distance():
    a, b = (imagehash.phash(Image.fromarray(blobs(seed))) for seed in (0, 1))
    packed = np.stack([pack_hash(a), pack_hash(b)])
    assert packed.shape == (2, 8) and packed.dtype == np.uint8
    distance = -similarity(Features(packed[:1], "hamming"), Features(packed[1:], "hamming"))[0, 0]
    assert distance == a - b


def test_colorhash_description_counts_its_real_bits():
    (colorhash,) = build_baselines(["colorhash"], work_dir=None)
    assert colorhash.description == "Hamming, 42 bits"  # 42 bits packed into 6 bytes, padding ignored


def test_unknown_baseline_is_refused():
    with pytest.raises(ValueError, match="unknown baselines"):
        build_baselines(["phash", "sift"], work_dir=None)


def test_feature_cache_returns_what_was_stored_by_pixel_digest(tmp_path):
    pixels = np.stack([blobs(seed, side=16) for seed in range(4)])
    digests = pixel_digests(pixels)
    cache = FeatureCache(tmp_path)
    cache.store("hsv", digests[:2], np.array([[1.0, 2.0], [3.0, 4.0]]))
    cache.store("hsv", digests[1:3], np.array([[9.0, 9.0], [5.0, 6.0]]))  # a known digest keeps its old row
    cached, hits = cache.lookup("hsv", digests)
    assert hits.tolist() == [True, True, True, False]
    assert np.array_equal(cached[:3], [[1, 2], [3, 4], [5, 6]])
    assert FeatureCache(None).lookup("hsv", digests)[1].sum() == 0


def test_pooled_imagenet_features_have_the_penultimate_width():
    import timm
    import torch

    from training.embedder.baselines import PooledFeatures

    module = PooledFeatures(timm.create_model("tf_efficientnet_lite0", pretrained=False)).eval()
    with torch.no_grad():
        assert module(torch.rand(2, 3, 64, 64)).shape == (2, 1280)
