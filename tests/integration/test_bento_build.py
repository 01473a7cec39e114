"""`bentoml build` for the CPU and the GPU bentofiles, offline, against the models of `model_env`.

What a bento must hold to serve: the service and the shared package (not training or tests), the
serving packages of pyproject.toml (the GPU one with onnxruntime-gpu and TensorRT instead of onnxruntime),
and references to the embedder and detector in the model store it was built from. The images are not
built here (`make container` does the CPU one with buildah); the GPU Dockerfile is checked as rendered.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, run_python

CPU = ROOT / "bentofile.yaml"
GPU = ROOT / "bentofile.gpu.yaml"
# What the GPU build puts in place of pyproject's `onnxruntime` (bentofile.gpu.yaml says why these).
GPU_SWAP = {"onnxruntime": ["onnxruntime-gpu", "tensorrt-cu12", "cuda-python", "onnx"]}
MODELS = {"lookalike-embedder", "lookalike-detector"}


def name(requirement: str) -> str:
    return re.split(r"[=<>!~\[; ]", requirement, maxsplit=1)[0].lower()


def serving_dependencies() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def bentofile_packages(path: Path) -> list[str]:
    return yaml.safe_load(path.read_text())["python"]["packages"]


def test_cpu_bentofile_lists_pyprojects_serving_dependencies():
    assert bentofile_packages(CPU) == serving_dependencies()


def test_gpu_bentofile_swaps_onnxruntime_for_the_cuda_build_and_tensorrt():
    expected = []
    for requirement in serving_dependencies():
        expected += GPU_SWAP.get(name(requirement), [name(requirement)])
    gpu = bentofile_packages(GPU)
    assert [name(r) for r in gpu] == expected
    assert "onnxruntime" not in {name(r) for r in gpu}, "onnxruntime and onnxruntime-gpu clash: never both"
    same = {r for r in serving_dependencies() if name(r) not in GPU_SWAP}
    assert same <= set(gpu), "the GPU build pins the shared packages as pyproject does"


@pytest.fixture(scope="module")
def store_models(model_env) -> set[str]:
    script = "import bentoml, json; print(json.dumps([str(m.tag) for m in bentoml.models.list()]))"
    return set(json.loads(run_python(["-c", script], model_env).stdout.strip().splitlines()[-1]))


def build(bentofile: Path, env: dict[str, str]) -> Path:
    # bentofile `envs` reach the image, not the build: settings read at import (the services' GPU
    # resources follow LOOKALIKE_GPU) come from the build's own environment, as in the README.
    if bentofile == GPU:
        env = {**env, "LOOKALIKE_GPU": "true"}
    out = run_python(["-m", "bentoml", "build", "-f", str(bentofile), "-o", "tag"], env, timeout=300).stdout
    tag = out.strip().splitlines()[-1].removeprefix("__tag__:")
    path = run_python(["-m", "bentoml", "get", tag, "-o", "path"], env).stdout.strip().splitlines()[-1]
    return Path(path)


def check_bento(bento: Path, bentofile: Path, store_models: set[str]) -> dict:
    src = bento / "src"
    shipped = {p.relative_to(ROOT) for folder in ("bentos", "lookalike") for p in (ROOT / folder).rglob("*.py")}
    shipped |= {Path("service.py"), Path("lookalike/data/rubricator.yaml")}
    shipped |= {
        p.relative_to(ROOT) for p in (ROOT / "lookalike" / "web").iterdir() if p.suffix in {".html", ".js", ".css"}
    }
    missing = sorted(str(p) for p in shipped if not (src / p).is_file())
    assert not missing, f"missing from the bento: {missing}"
    for unwanted in ("training", "tests", "var", "indexer", "loadtests"):
        assert not (src / unwanted).exists(), f"{unwanted}/ has no place in a serving bento"
    assert not list(src.rglob("*.onnx")), "models travel through the model store, not the source tree"

    requirements = (bento / "env" / "python" / "requirements.txt").read_text().split()
    assert requirements[: len(bentofile_packages(bentofile))] == bentofile_packages(bentofile)
    assert not {"torch", "torchvision", "timm", "pytest"} & {name(r) for r in requirements}

    info = yaml.safe_load((bento / "bento.yaml").read_text())
    assert info["service"] == "service:Lookalike"
    referenced = {m["tag"] for service in info["services"] for m in service["models"]}
    assert {tag.split(":")[0] for tag in referenced} == MODELS
    assert referenced <= store_models, f"{referenced - store_models} not in the store the bento was built from"
    return info


@pytest.mark.slow
def test_cpu_bento(model_env, store_models):
    bento = build(CPU, model_env)
    info = check_bento(bento, CPU, store_models)
    assert info["name"] == "lookalike"
    assert not [s["name"] for s in info["services"] if s["config"].get("resources", {}).get("gpu")]
    dockerfile = (bento / "env" / "docker" / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.MULTILINE)


@pytest.mark.slow
def test_gpu_bento(model_env, store_models):
    bento = build(GPU, model_env)
    info = check_bento(bento, GPU, store_models)
    assert info["name"] == "lookalike-gpu"
    gpus = {s["name"]: s["config"].get("resources", {}).get("gpu") for s in info["services"]}
    assert gpus == {"lookalike": None, "embedder": 1, "detector": 1}, "the model services ask for a GPU"
    assert info["docker"]["cuda_version"].startswith("12.8")
    assert {e["name"]: e["value"] for e in info["envs"]} == {"LOOKALIKE_ENGINE": "tensorrt", "LOOKALIKE_GPU": "true"}
    assert info["python"]["extra_index_url"] == ["https://pypi.nvidia.com"]
    dockerfile = (bento / "env" / "docker" / "Dockerfile").read_text()
    assert re.search(r"^FROM nvidia/cuda:12\.8\.\d+-cudnn-runtime-ubuntu24\.04", dockerfile, re.MULTILINE)
    # scripts/gpu.Dockerfile.j2: pip before BentoML installs uv with it.
    assert dockerfile.index("ensurepip") < dockerfile.index("uv==")
    assert "ENV LOOKALIKE_ENGINE=$LOOKALIKE_ENGINE" in dockerfile
