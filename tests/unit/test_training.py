import math

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch", reason="training extras (torch) are not installed")

from training.embedder.presets import TrainPreset
from training.embedder.train import (
    NO_LABEL,
    CrossBatchMemory,
    TrainingViews,
    ViewCache,
    bit_balance_loss,
    fit_itq_rotation,
    get_args_parser,
    instance_loss,
    pick_views,
    quantization_loss,
    rotate_color_codes,
    trunk_batch,
    view_cache_key,
)


def test_quantization_loss_is_zero_exactly_for_sign_vectors():
    d = 128
    signs = torch.where(torch.rand(4, d) > 0.5, 1.0, -1.0) / math.sqrt(d)
    assert quantization_loss(signs).item() == pytest.approx(0.0, abs=1e-9)
    peaked = torch.nn.functional.normalize(torch.randn(4, d) ** 3, dim=1)
    assert quantization_loss(peaked).item() > 0.3


def test_bit_balance_loss_prefers_half_set_bits():
    d = 64
    balanced = torch.cat([torch.ones(8, d), -torch.ones(8, d)]) / math.sqrt(d)
    lopsided = torch.ones(16, d) / math.sqrt(d)
    assert bit_balance_loss(balanced).item() == pytest.approx(0.0, abs=1e-9)
    assert bit_balance_loss(lopsided).item() > 0.9


def test_instance_loss_rewards_views_of_the_same_image_being_close():
    generator = torch.Generator().manual_seed(0)
    anchors = torch.nn.functional.normalize(torch.randn(8, 32, generator=generator), dim=1)
    ids = torch.arange(8).repeat(2)
    aligned = torch.cat([anchors, anchors])
    shuffled = torch.cat([anchors, anchors[torch.randperm(8, generator=generator)]])
    assert instance_loss(aligned, ids, 0.1) < instance_loss(shuffled, ids, 0.1)


def test_cross_batch_memory_keeps_the_newest_views_detached():
    memory = CrossBatchMemory(size=5)
    for start in range(0, 12, 4):
        memory.push(torch.full((4, 3), float(start), requires_grad=True), torch.arange(start, start + 4))
    assert len(memory) == 5 and not memory.embeddings.requires_grad
    assert memory.image_ids.tolist() == [8, 9, 10, 11, 4]


def test_hard_memory_negatives_raise_the_instance_loss_and_far_ones_do_not():
    generator = torch.Generator().manual_seed(0)
    anchors = torch.nn.functional.normalize(torch.randn(4, 16, generator=generator), dim=1)
    ids = torch.arange(4).repeat(2)
    batch = torch.cat([anchors, anchors])
    plain = instance_loss(batch, ids, 0.1)
    hard, far = CrossBatchMemory(size=8), CrossBatchMemory(size=8)
    hard.push(anchors, torch.arange(10, 14))  # look like the batch's images, but are others
    far.push(-anchors, torch.arange(10, 14))
    assert instance_loss(batch, ids, 0.1, hard) > plain + 0.5
    assert instance_loss(batch, ids, 0.1, far) == pytest.approx(plain.item(), abs=1e-3)


def test_pick_views_pairs_two_views_of_each_image():
    views_per_image, shape_views = 5, 3
    cache = ViewCache(
        torch.zeros(40), torch.zeros(40), views_per_image, trunk=torch.zeros(40, 1, 1, 1), early=torch.zeros(40, 1)
    )
    image_ids = torch.tensor([0, 3, 7])
    rows = pick_views(image_ids, cache, shape_views, torch.Generator().manual_seed(0))
    first, second = rows[:3], rows[3:]
    assert torch.equal(first // views_per_image, image_ids) and torch.equal(second // views_per_image, image_ids)
    assert torch.all(first % views_per_image < shape_views)
    assert torch.all(first != second)


def test_train_preset_is_reproducible_and_sized():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 200, 3), dtype=np.uint8))
    preset = TrainPreset(crop_size=64)
    first = preset(image, np.random.default_rng(5))
    assert first.shape == (64, 64, 3) and first.dtype == np.uint8
    assert np.array_equal(first, preset(image, np.random.default_rng(5)))
    assert not np.array_equal(first, preset(image, np.random.default_rng(6)))


def test_itq_rotation_is_orthogonal_and_lowers_the_quantisation_error():
    generator = torch.Generator().manual_seed(0)
    # Correlated components, as a trained head gives: sign codes of the raw axes lose much.
    unit = torch.nn.functional.normalize(
        torch.randn(512, 16, generator=generator) @ torch.randn(16, 16, generator=generator), dim=1
    )
    rotation = fit_itq_rotation(unit)
    assert torch.allclose(rotation @ rotation.T, torch.eye(16), atol=1e-5)
    assert quantization_loss(unit @ rotation) < 0.9 * quantization_loss(unit)
    # Cosines are unchanged: float search ranks exactly as before.
    assert torch.allclose((unit @ rotation) @ (unit @ rotation).T, unit @ unit.T, atol=1e-5)


def tiny_embedder(train_trunk: bool = True):
    from training.embedder.model import Embedder, EmbedderConfig

    config = EmbedderConfig(
        heads="trained", pretrained=False, train_trunk=train_trunk, embed_dim=16, hidden_dim=16, color_pooling="garment",
        shape_classes=["a", "b"], colour_classes=["red", "blue"], pattern_classes=["plain"],
    )  # fmt: skip
    return Embedder(config)


@pytest.mark.parametrize("train_trunk", [False, True])
def test_trunk_trains_from_cached_pixels_only_when_asked(train_trunk):
    model = tiny_embedder(train_trunk)
    pixels = torch.randint(0, 256, (3, 64, 64, 3), dtype=torch.uint8)
    cache = ViewCache(torch.zeros(3), torch.zeros(3), 1, pixels=pixels)
    trunk_map, early = trunk_batch(model, cache, torch.tensor([0, 2]))
    shape, color = model.embed_from_trunk(trunk_map, early)
    (shape.sum() + color.sum()).backward()
    stem = model.backbone.conv_stem.weight
    assert stem.requires_grad is train_trunk and (stem.grad is not None) is train_trunk
    assert model.backbone.conv_head.weight.grad is not None  # the top trains either way


def test_colour_rotation_keeps_cosines_and_turns_the_trained_copy_alike():
    import copy

    torch.manual_seed(0)
    model = tiny_embedder().eval()
    trained = copy.deepcopy(model)
    cache = ViewCache(
        torch.zeros(8), torch.zeros(8), 2, pixels=torch.randint(0, 256, (8, 64, 64, 3), dtype=torch.uint8)
    )
    with torch.no_grad():
        before = torch.nn.functional.normalize(
            model.embed_from_trunk(*trunk_batch(model, cache, torch.arange(8)))[1], dim=1
        )
        error_before, error_after = rotate_color_codes(model, cache, also=trained)
        after = torch.nn.functional.normalize(
            model.embed_from_trunk(*trunk_batch(model, cache, torch.arange(8)))[1], dim=1
        )
    assert error_after <= error_before
    assert torch.allclose(after @ after.T, before @ before.T, atol=1e-5)
    assert not torch.allclose(after, before, atol=1e-3)
    for name, value in model.state_dict().items():  # the trained copy got the same rotation
        assert torch.allclose(value, trained.state_dict()[name], atol=1e-6), name


def test_partial_and_hard_views_are_shape_views_before_the_repainted_ones(tmp_path):
    from lookalike.synthetic import write_catalogue
    from training.datasets import FolderDataset

    write_catalogue(tmp_path / "data", per_class=1, seed=1, size=160, categories=["dress", "pants"])
    dataset = FolderDataset(tmp_path / "data")
    counts = {"crops": 1, "photos": 1, "recolours": 1, "seed": 0}
    more = TrainingViews(dataset, tmp_path / "masks", **counts, partials=1, hards=2)
    views, colours, patterns = more[1]
    assert len(views) == more.views_per_image == 6 and more.shape_views == 5
    assert (colours[:5] == NO_LABEL).all() and (patterns[:5] == NO_LABEL).all() and colours[5] != NO_LABEL
    assert len({view.tobytes() for view in views}) == 6  # no two views share their random draws
    # The views there were before are drawn as before: runs without the new views are unchanged.
    plain_views = TrainingViews(dataset, tmp_path / "masks", **counts)[1][0]
    assert np.array_equal(views[[0, 1, 5]], plain_views)
    (other,) = more.others(1)  # the hard views' possible occluder: the only other photo
    assert other.mask.shape == (other.image.height, other.image.width)


def test_view_cache_key_changes_only_with_the_options_a_run_uses(tmp_path):
    args = get_args_parser().parse_args(["--data-dir", str(tmp_path)])
    model = tiny_embedder(train_trunk=False)
    # The keys these runs had before the options existed: their caches are reused.
    assert view_cache_key(model, args, "train-data", "val-data") == "5c606d2a6166"
    assert view_cache_key(tiny_embedder(train_trunk=True), args, "train-data", "val-data") == "7ecfbb7d8567"
    init = tmp_path / "embedder.onnx"
    init.write_bytes(b"one graph")
    keys = {"5c606d2a6166"}
    for option, value in (("partial_views", 1), ("hard_views", 1), ("hard_views", 2), ("init_onnx", init)):
        setattr(args, option, value)
        keys.add(view_cache_key(model, args, "train-data", "val-data"))
    init.write_bytes(b"another graph")  # the trunk is exported from the file's weights
    keys.add(view_cache_key(model, args, "train-data", "val-data"))
    assert len(keys) == 6
