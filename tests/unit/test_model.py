import pytest

torch = pytest.importorskip("torch", reason="training extras (torch) are not installed")

from training.backbone import STAGE_DEPTHS, efficientnet_lite, efficientnet_lite0, pretrained_weights_path, rename_keys
from training.embedder.model import EmbedderConfig, build_embedder


@pytest.fixture(scope="module")
def embedder():
    return build_embedder(EmbedderConfig())


def test_pretrained_weights_cover_every_block_and_classify():
    renamed = rename_keys(torch.load(pretrained_weights_path(), weights_only=True))
    assert sum(key.endswith("conv_dw.weight") for key in renamed) == sum(STAGE_DEPTHS)
    model = efficientnet_lite0()  # loads strictly: a missing or extra key raises
    assert model.classifier.out_features == 1000


def test_lite1_weights_load_into_its_deeper_stages():
    model = efficientnet_lite("tf_efficientnet_lite1")  # strictly, with Lite1's blocks per stage
    assert [len(stage) for stage in model.blocks] == [1, 3, 3, 4, 4, 5, 1]
    lite0_stem = efficientnet_lite0().conv_stem.weight
    assert model.conv_stem.weight.shape == lite0_stem.shape and not torch.equal(model.conv_stem.weight, lite0_stem)


def test_heads_give_two_unit_vectors_per_image(embedder):
    images = torch.rand(3, 3, 224, 224)
    with torch.no_grad():
        shape, color = embedder(images)
    assert shape.shape == (3, 128) and color.shape == (3, 128)
    assert torch.allclose(shape.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(color.norm(dim=1), torch.ones(3), atol=1e-5)


def test_garment_pooling_weights_early_maps_by_an_attention_over_positions():
    config = EmbedderConfig(
        heads="trained", color_pooling="garment", dropout=0.2, drop_path_rate=0.1, pretrained=False,
        shape_classes=["a", "b", "c"], colour_classes=["red", "blue"], pattern_classes=["plain"],
    )  # fmt: skip
    model = build_embedder(config)
    images = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        trunk_map, early = model.trunk(images)
        weights = model.garment_attention(trunk_map)
        shape, color, logits = model(images)
    assert early.shape == (2, model.early_dim, *trunk_map.shape[-2:])  # maps, pooled to the trunk's size
    assert weights.shape == (2, trunk_map.shape[-2] * trunk_map.shape[-1])
    assert torch.allclose(weights.sum(1), torch.ones(2), atol=1e-5)
    assert shape.shape == color.shape == (2, 128) and logits.shape == (2, 3)
    assert torch.allclose(color.norm(dim=1), torch.ones(2), atol=1e-5)
    with torch.no_grad():  # eval mode: dropout and stochastic depth are off, outputs repeat
        assert torch.equal(model(images)[1], color)


def test_provisional_heads_are_reproducible():
    first, second = build_embedder(EmbedderConfig(seed=7)), build_embedder(EmbedderConfig(seed=7))
    assert torch.equal(first.shape_head.weight, second.shape_head.weight)
    other = build_embedder(EmbedderConfig(seed=8))
    assert not torch.equal(first.shape_head.weight, other.shape_head.weight)


def test_provisional_projection_is_orthonormal(embedder):
    weight = embedder.shape_head.weight
    assert torch.allclose(weight @ weight.T, torch.eye(128), atol=1e-5)


def test_centred_features_give_balanced_bits(embedder):
    # Centring on the expected activation makes sign codes carry information: about half the
    # bits are set, instead of nearly all of them being 1 as for raw non-negative features.
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(16, 3, 224, 224, generator=generator)
    with torch.no_grad():
        shape, _ = embedder(images)
    assert 0.3 < (shape > 0).float().mean().item() < 0.7
