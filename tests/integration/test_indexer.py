"""The indexer CLI on real parts: the exported embedder and the embedded Qdrant engine."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lookalike.synthetic import write_catalogue
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def index(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "indexer", "folder", *args],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_damaged_images_are_reported_and_the_rest_indexed(model_env, tmp_path):
    catalogue = tmp_path / "catalogue"
    write_catalogue(catalogue, per_class=2, seed=3, size=96, categories=["dress", "skirt"])
    (catalogue / "dress" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    mapping = tmp_path / "mapping.txt"
    mapping.write_text("dress => midi-dress\n")  # skirt stays unmapped on purpose
    env = {**model_env, "LOOKALIKE_STORE_PATH": str(tmp_path / "store")}
    result = index([str(catalogue), "--shop", "s", "--mapping", str(mapping)], env)
    assert result.returncode == 0, result.stderr
    assert "indexed 4 offers, 1 failed" in result.stderr
    assert "skipped s/dress/broken" in result.stderr
    assert "| skirt | 2 |" in result.stderr  # the unmapped report

    again = index([str(catalogue), "--shop", "s", "--mapping", str(mapping)], env)
    assert "the store holds 4 points" in again.stderr  # re-indexing overwrites, never duplicates


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda tmp: [str(tmp / "missing")], "does not exist"),
        (lambda tmp: [str(tmp), "--mapping", str(tmp / "bad.txt")], "bad.txt:2: unknown rubricator category"),
    ],
)
def test_bad_input_fails_with_a_message_not_a_traceback(model_env, tmp_path, make_args, message):
    (tmp_path / "bad.txt").write_text("dress => dress\nskirt => no-such-category\n")
    result = index(make_args(tmp_path), {**model_env, "LOOKALIKE_STORE_PATH": str(tmp_path / "store")})
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_no_detect_embeds_whole_photos_and_a_missing_detector_is_a_clear_error(model_env, tmp_path):
    catalogue = tmp_path / "catalogue"
    write_catalogue(catalogue, per_class=2, seed=4, size=96, categories=["dress", "shoes"])
    env = {**model_env, "LOOKALIKE_STORE_PATH": str(tmp_path / "store")}
    result = index([str(catalogue), "--no-detect"], env)
    assert result.returncode == 0, result.stderr
    assert "detection is off" in result.stderr and "4 indexed as the whole photo" in result.stderr

    missing = index([str(catalogue)], {**env, "LOOKALIKE_DETECTOR_MODEL": "no-such-detector:latest"})
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "no-such-detector" in missing.stderr and "--no-detect" in missing.stderr
    off = index([str(catalogue)], {**env, "LOOKALIKE_DETECTOR_MODEL": "no-such-detector", "LOOKALIKE_DETECT": "false"})
    assert off.returncode == 0, off.stderr
