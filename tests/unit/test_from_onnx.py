"""An exported embedder's weights load back into torch: outputs match, BatchNorms become trainable."""

import copy

import pytest

torch = pytest.importorskip("torch", reason="training extras (torch) are not installed")

from training.embedder.export import output_names
from training.embedder.from_onnx import (
    NOT_EXPORTED,
    calibrate_batchnorm,
    check_config_matches,
    load_onnx_weights,
    parity,
)
from training.embedder.model import Embedder, EmbedderConfig
from training.onnx_export import export_onnx, store_weights_fp16

CROP = 64  # the graph's input size is fixed at export; a small one keeps the export quick


def tiny_config(**changes) -> EmbedderConfig:
    values = {
        "heads": "trained", "pretrained": False, "embed_dim": 16, "hidden_dim": 16, "color_pooling": "garment",
        "shape_classes": ["a", "b", "c"], "colour_classes": ["red", "blue"], "pattern_classes": ["plain"],
    }  # fmt: skip
    return EmbedderConfig(**(values | changes))


@torch.no_grad()
def with_random_batchnorms(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Freshly built BatchNorms are the identity, so folding them would prove nothing."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            size = module.num_features
            module.weight.copy_(0.5 + torch.rand(size, generator=generator))
            module.bias.copy_(0.2 * torch.randn(size, generator=generator))
            module.running_mean.copy_(0.2 * torch.randn(size, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(size, generator=generator))
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny model and its graph, float32 and float16-stored."""
    torch.manual_seed(0)
    model = with_random_batchnorms(Embedder(tiny_config()), seed=1).eval()
    folder = tmp_path_factory.mktemp("onnx")
    fp32 = export_onnx(model, folder / "tiny.onnx", CROP, output_names(model))
    return model, fp32, store_weights_fp16(fp32, folder / "tiny-fp16.onnx")


def fresh_model() -> Embedder:
    torch.manual_seed(123)  # other initial weights than the exported model's
    return Embedder(tiny_config()).eval()


@pytest.mark.parametrize(("graph", "tolerance"), [(1, 1e-4), (2, 1e-2)], ids=["float32", "float16"])
def test_loaded_weights_give_the_exported_models_outputs(exported, graph, tolerance):
    original, path = exported[0], exported[graph]
    model = fresh_model()
    load_onnx_weights(model, path)
    images = torch.rand(2, 3, CROP, CROP, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for name, want, got in zip(output_names(model), original(images), model(images)):
            # Logits are scale x cosines: their rounding grows with the scale.
            scale = model.config.classifier_scale if name == "category_logits" else 1.0
            assert (want - got).abs().max() < tolerance * scale, name
    # Against the graph it was read from, rounding and all, torch computes the same.
    assert max(parity(model, path, CROP, batches=1, batch_size=2).values()) < 1e-4


def test_every_weight_is_set_but_the_classifiers_the_export_drops(exported):
    model = fresh_model()
    with torch.no_grad():
        for value in model.state_dict().values():
            value.fill_(float("nan") if value.is_floating_point() else -1)
    load_onnx_weights(model, exported[2])
    unset = {
        name
        for name, value in model.state_dict().items()
        if (value.isnan() if value.is_floating_point() else value == -1).any()
    }
    assert unset == set(NOT_EXPORTED)


def test_a_model_built_otherwise_is_refused(exported):
    with pytest.raises(ValueError, match="shape"):
        load_onnx_weights(Embedder(tiny_config(embed_dim=8)).eval(), exported[1])
    with pytest.raises(ValueError, match=r"embed_dim: 8 here, 16 in the ONNX(.|\n)*shape_classes"):
        check_config_matches(tiny_config(embed_dim=8, shape_classes=["a", "b"]), tiny_config().to_dict())
    check_config_matches(tiny_config(dropout=0.3, train_trunk=True), tiny_config().to_dict())  # training-only fields


def test_calibrated_batchnorms_keep_eval_and_make_train_mode_agree(exported):
    model = fresh_model()
    load_onnx_weights(model, exported[1])
    images = torch.rand(4, 3, CROP, CROP, generator=torch.Generator().manual_seed(0))

    def train_mode_shape(net):  # batch statistics; the tiny model has no dropout or drop path
        with torch.no_grad():
            return copy.deepcopy(net).train()(images)[0]

    with torch.no_grad():
        eval_before = model(images)[0]
    folded_gap = (train_mode_shape(model) - eval_before).abs().max()
    calibrated = calibrate_batchnorm(model, model, [images])
    with torch.no_grad():
        assert not model.training and torch.allclose(model(images)[0], eval_before, atol=1e-4)
    assert "shape_head.1" in calibrated and "backbone.bn1" in calibrated
    # On the batch it was measured on, train mode now computes what eval mode does.
    assert (train_mode_shape(model) - eval_before).abs().max() < min(1e-3, folded_gap / 10)
