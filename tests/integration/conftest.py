"""Served Lookalikes for the integration tests: a catalogue, indexed, behind `bentoml serve`.

`server` serves a generated catalogue (drawn garments); `photo_server` a small catalogue of real
photos, for what needs a trained detector (it finds garments in photos, not in drawings).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw

from lookalike.settings import Settings
from lookalike.synthetic import write_catalogue
from tests.conftest import ROOT, free_port, run_python

MAX_UPLOAD_BYTES = 300_000
PHOTOS_PER_CLASS = 4
PASTED = ("pants", "t-shirt", "shoes")  # classes of the photos pasted side by side into one (`compose`)
SHOP = "test-shop"
CORS_ORIGIN = "https://shop.example"
WRITE_KEY = "test-write-key"


@pytest.fixture(scope="session")
def catalogue(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("catalogue")
    write_catalogue(root, per_class=4, seed=0)
    return root


@pytest.fixture(scope="session")
def server(model_env, catalogue, tmp_path_factory) -> Iterator[str]:
    settings = {
        "LOOKALIKE_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
        # The tests' own image server runs on 127.0.0.1; "localhost" stays refused, as any loopback host.
        "LOOKALIKE_FETCH_ALLOWED_HOSTS": '["127.0.0.1"]',
        "LOOKALIKE_CORS_ORIGINS": f'["{CORS_ORIGIN}"]',
        "LOOKALIKE_API_KEYS": f'["{WRITE_KEY}"]',
    }
    with serve(model_env, catalogue, tmp_path_factory.mktemp("service"), settings, priced=True) as url:
        yield url


@pytest.fixture(scope="session")
def photo_catalogue(tmp_path_factory) -> Path:
    """The first PHOTOS_PER_CLASS real photos of each class of the held-out split, as a shop's folder."""
    clothing = Settings(_env_file=None).clothing_dir
    source = (clothing if clothing.is_absolute() else ROOT / clothing) / "validation"
    if not source.is_dir():
        pytest.skip(f"no real photos at {source} (LOOKALIKE_CLOTHING_DIR): a trained detector needs photos")
    root = tmp_path_factory.mktemp("photos")
    for folder in sorted(path for path in source.iterdir() if path.is_dir()):
        (root / folder.name).mkdir()
        for photo in sorted(folder.glob("*.jpg"))[:PHOTOS_PER_CLASS]:
            shutil.copyfile(photo, root / folder.name / photo.name)
    return root


@pytest.fixture(scope="session")
def photo_server(model_env, photo_catalogue, tmp_path_factory) -> Iterator[str]:
    with serve(model_env, photo_catalogue, tmp_path_factory.mktemp("photo-service")) as url:
        yield url


@pytest.fixture(scope="session")
def trained_detector(detector_card):
    if detector_card.provisional or not detector_card.metrics:
        pytest.skip(
            "the model store holds the provisional detector (untrained: its boxes mean nothing); "
            "ship a trained one as training/artifacts/detector.onnx + .json"
        )
    return detector_card


def pasted_paths(photo_catalogue: Path) -> list[Path]:
    """The photos `compose` pastes: the first catalogue photo of each of the PASTED classes."""
    return [min((photo_catalogue / name).glob("*.jpg")) for name in PASTED]


def compose(photos: list[Image.Image], background: str, seed: int = 0) -> Image.Image:
    """`photos` side by side, each 360 px high, on a plain or cluttered background."""
    rng = np.random.default_rng(seed)
    scaled = [photo.resize((round(photo.width * 360 / photo.height), 360)) for photo in photos]
    gap = 60
    canvas = Image.new("RGB", (sum(p.width for p in scaled) + gap * (len(scaled) + 1), 480), (232, 228, 220))
    if background == "cluttered":
        draw = ImageDraw.Draw(canvas)
        for _ in range(60):
            x, y = rng.integers(0, canvas.width), rng.integers(0, canvas.height)
            w, h = rng.integers(10, 90, 2)
            colour = tuple(int(v) for v in rng.integers(40, 220, 3))
            shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
            shape((x, y, x + w, y + h), fill=colour)
    x = gap
    for photo in scaled:
        canvas.paste(photo, (x, 60))
        x += photo.width + gap
    return canvas


@contextlib.contextmanager
def serve(
    model_env: dict[str, str],
    catalogue: Path,
    workdir: Path,
    settings: dict[str, str] | None = None,
    *,
    priced: bool = False,
    index: bool = True,
    ready: str = "/readyz",
):
    """Index `catalogue` into a store in `workdir` (`priced`: with `tests.integration.priced`'s prices,
    currencies and colours), then `bentoml serve` it; yields the URL once `ready` answers 200.

    `index=False` serves whatever store `settings` name, as it is (none at all, for the outage tests).
    """
    env = {
        **model_env,
        "BENTOML_HOME": str(own_bentoml_home(model_env, workdir)),
        "LOOKALIKE_STORE_PATH": str(workdir / "store"),
        "LOOKALIKE_CATALOG_IMAGES_DIR": str(catalogue),
        **(settings or {}),
    }
    if index:
        run_python(["-m", "indexer", "folder", str(catalogue), "--shop", SHOP], env)
    if priced:
        run_python(["-m", "tests.integration.priced", str(catalogue), SHOP], env)
    port = free_port()
    log_path = workdir / "serve.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "bentoml"),
                "serve",
                "service:Lookalike",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, process, log_path, ready=ready)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def own_bentoml_home(model_env: dict[str, str], workdir: Path) -> Path:
    """A BENTOML_HOME for one server, sharing `model_env`'s models: `bentoml serve` empties its home's
    Prometheus folder on start, so servers sharing a home lose each other's model-service metrics."""
    home = workdir / "bentoml-home"
    home.mkdir(exist_ok=True)
    if not (home / "models").exists():
        (home / "models").symlink_to(Path(model_env["BENTOML_HOME"]) / "models")
    return home


def wait_until_ready(
    url: str, process: subprocess.Popen, log_path: Path, timeout: float = 180, *, ready: str = "/readyz"
) -> None:
    """Wait until `url` + `ready` answers 200; fail with the log's tail if the server exits or takes `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"bentoml serve exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}{ready}", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"bentoml serve was not ready within {timeout} s:\n{log_path.read_text()[-4000:]}")
