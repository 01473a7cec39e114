"""The indexer CLI on real parts: the shipped models, the embedded Qdrant engine, a catalogue served
over HTTP on 127.0.0.1, `kill -9`, and deployed model services (`bentoml serve`)."""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import bentoml
import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadtests.bench_indexer import ImageServer, jpeg, make_catalogue, write_yml
from lookalike.modelcard import EmbedderCard
from lookalike.store.edge import EdgeStore
from lookalike.synthetic import write_catalogue
from tests.conftest import ROOT, SHIPPED_EMBEDDER, free_port
from tests.integration.conftest import own_bentoml_home, wait_until_ready

pytestmark = pytest.mark.slow
MAPPING = ROOT / "indexer" / "mappings" / "clothing.txt"
# The vectors the indexer writes: the shipped embedder's (the model store of `model_env` holds it).
DIMS = EmbedderCard.model_validate_json(SHIPPED_EMBEDDER.with_suffix(".json").read_text(encoding="utf-8")).dims


def indexer(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "indexer", *args],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def env(model_env, tmp_path) -> dict[str, str]:
    # The tests' image server runs on 127.0.0.1: the fetcher refuses loopback hosts not listed here.
    return {
        **model_env,
        "LOOKALIKE_STORE_PATH": str(tmp_path / "store"),
        "LOOKALIKE_FETCH_ALLOWED_HOSTS": '["127.0.0.1"]',
    }


def status(env: dict[str, str]) -> dict:
    result = indexer(["status", "--json"], env)
    assert result.returncode == 0, result.stderr
    return {shop["shop"]: shop for shop in json.loads(result.stdout)["shops"]}


def snapshot(store_path: Path, shop: str) -> dict[str, tuple]:
    """Every offer of `shop`: (payload as an Offer, content hash, then each vector in card order)."""
    with EdgeStore(store_path, dims=DIMS) as store:
        hashes = store.content_hashes(shop)
        stored = {offer_id: store.vectors_of(shop, offer_id) for offer_id in hashes}
    return {
        offer_id: (item.offer, hashes[offer_id], *(item.vectors[name] for name in DIMS))
        for offer_id, item in stored.items()
    }


def assert_same_index(found: dict[str, tuple], expected: dict[str, tuple]) -> None:
    assert sorted(found) == sorted(expected)
    for offer_id, (offer, content_hash, *vectors) in expected.items():
        assert found[offer_id][:2] == (offer, content_hash), offer_id
        for got, vector in zip(found[offer_id][2:], vectors, strict=True):
            np.testing.assert_allclose(got, vector, atol=1e-6)


def test_folder_catalogue_damaged_images_unmapped_report_and_rerun(env, tmp_path):
    catalogue = tmp_path / "catalogue"
    write_catalogue(catalogue, per_class=2, seed=3, size=96, categories=["dress", "hat"])
    (catalogue / "dress" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    result = indexer(["folder", str(catalogue), "--shop", "s", "--mapping", str(MAPPING)], env)
    assert result.returncode == 0, result.stderr
    assert "added 4, updated 0" in result.stderr and "failed 1" in result.stderr
    assert "e.g. dress/broken: " in result.stderr
    assert "| hat | 2 |" in result.stderr  # the unmapped report; the folder command keeps them
    assert "the store holds 4 offers of shop 's'" in result.stderr

    again = indexer(["folder", str(catalogue), "--shop", "s", "--mapping", str(MAPPING)], env)
    assert "unchanged 4" in again.stderr and "0 pictures embedded" in again.stderr
    assert "the store holds 4 offers" in again.stderr  # re-indexing never duplicates
    skipped = indexer(["run", str(catalogue), "--shop", "s", "--mapping", str(MAPPING)], env)
    assert skipped.returncode == 0, skipped.stderr  # without --keep-unmapped: the hats go
    assert "2 offers skipped" in skipped.stderr and "deleted 2" in skipped.stderr


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda tmp: ["folder", str(tmp / "missing")], "does not exist"),
        (lambda tmp: ["folder", str(tmp), "--mapping", str(tmp / "bad.txt")], "bad.txt:2: unknown rubricator category"),
        (lambda tmp: ["run", str(tmp / "bad.txt"), "--shop", "s"], "cannot tell the format of bad.txt"),
        (lambda tmp: ["run", str(tmp), "--shop", "s", "--embedder-url", "http://127.0.0.1:9"], "cannot reach"),
    ],
)
def test_bad_input_fails_with_a_message_not_a_traceback(env, tmp_path, make_args, message):
    (tmp_path / "bad.txt").write_text("dress => dress\nskirt => no-such-category\n")
    result = indexer(make_args(tmp_path), env)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_no_detect_embeds_whole_photos_and_a_missing_detector_is_a_clear_error(env, tmp_path):
    catalogue = tmp_path / "catalogue"
    write_catalogue(catalogue, per_class=2, seed=4, size=96, categories=["dress", "shoes"])
    result = indexer(["folder", str(catalogue), "--no-detect"], env)
    assert result.returncode == 0, result.stderr
    assert "detection is off" in result.stderr and "4 as the whole photo" in result.stderr

    missing = indexer(["folder", str(catalogue)], {**env, "LOOKALIKE_DETECTOR_MODEL": "no-such-detector:latest"})
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "no-such-detector" in missing.stderr and "--no-detect" in missing.stderr
    off = indexer(
        ["folder", str(catalogue)], {**env, "LOOKALIKE_DETECTOR_MODEL": "no-such", "LOOKALIKE_DETECT": "false"}
    )
    assert off.returncode == 0, off.stderr


def test_a_yml_feed_over_http_is_indexed_then_revalidated_and_private_addresses_are_refused(env, tmp_path):
    with ImageServer() as server:
        offers = make_catalogue(server, 6, seed=1, size=96)
        broken = (
            # no name: a feed problem; pictures on a private address, on a loopback host that is not
            # allowed ("localhost"), and missing (404): fetch failures. None stops the run.
            '<offer id="no-name"><categoryId>1</categoryId><picture>http://x.example/a.jpg</picture></offer>'
            '<offer id="private"><name>p</name><categoryId>1</categoryId>'
            "<picture>http://10.20.30.40/a.jpg</picture></offer>"
            f'<offer id="loopback"><name>l</name><categoryId>1</categoryId>'
            f"<picture>http://localhost:{server.port}/img/000000.jpg</picture></offer>"
            f'<offer id="gone"><name>g</name><categoryId>1</categoryId>'
            f"<picture>{server.url('/img/missing.jpg')}</picture></offer>"
        )
        feed = write_yml(tmp_path / "shop.yml", offers, extra=broken)
        result = indexer(["run", str(feed), "--shop", "yml", "--mapping", str(MAPPING)], env)
        assert result.returncode == 0, result.stderr
        requests = server.requests.total()
        shop = status(env)["yml"]
        summary = shop["last_run"]["summary"]
        assert (shop["offers"], summary["added"], shop["last_run"]["state"]) == (6, 6, "completed")
        assert summary["failed"] == {"feed: missing title": 1, "fetch: refused": 2, "fetch: HTTP 404": 1}
        assert any("10.20.30.40" in example for example in summary["examples"]["fetch: refused"])
        assert server.requests["/img/000000.jpg"] == 1  # the loopback host was refused before connecting

        again = indexer(["run", str(feed), "--shop", "yml", "--mapping", str(MAPPING)], env)
        assert again.returncode == 0, again.stderr
        assert "unchanged 6" in again.stderr
        assert server.not_modified == 6 and server.requests.total() - requests == 7  # 6 revalidated + the 404
    text = indexer(["status"], env)
    assert "yml: 6 offers" in text.stdout and "1 fetch: HTTP 404" in text.stdout


def test_a_second_indexer_on_the_same_store_stops_with_a_clear_message(env, tmp_path):
    with ImageServer() as server:
        feed = write_yml(tmp_path / "shop.yml", make_catalogue(server, 2, size=64))
        server.delays["/img/000000.jpg"] = 60.0  # the first run stays busy until it is killed
        first = subprocess.Popen(
            [sys.executable, "-m", "indexer", "run", str(feed), "--shop", "a", "--mapping", str(MAPPING)],
            cwd=ROOT,
            env={**env, "LOOKALIKE_FETCH_TIMEOUT_S": "120"},
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            for line in first.stderr:
                if "indexing " in line:  # it holds the store
                    break
            second = indexer(["run", str(feed), "--shop", "b"], env)
            busy = indexer(["status"], env)
        finally:
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert "is open elsewhere" in second.stderr and "one at a time" in second.stderr
    assert busy.returncode == 0 and "open in another process" in busy.stdout
    assert status(env)["a"]["last_run"]["state"] == "interrupted"  # killed: its process is gone


def run_and_kill(args: list[str], env: dict[str, str], marker: str, count: int) -> bool:
    """Run the indexer and kill -9 it at the `count`-th stderr line with `marker`; whether it was
    killed before it ended on its own."""
    process = subprocess.Popen(
        [sys.executable, "-m", "indexer", "-v", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = 0
    for line in process.stderr:
        seen += marker in line
        if seen == count:
            os.kill(process.pid, signal.SIGKILL)
            break
    process.stderr.close()
    return process.wait(timeout=120) == -signal.SIGKILL


def test_runs_killed_at_any_point_then_rerun_leave_the_index_a_clean_run_leaves(env, tmp_path):
    """Feed A, then feed B (4 offers gone, 3 new pictures, 3 new prices, 4 new offers), indexed into
    one store cleanly and into another with `kill -9` at several points (each rerun picking up from the
    last kill), then run to the end: the same ids, payloads and hashes, and vectors within 1e-6."""
    clean = {**env, "LOOKALIKE_STORE_PATH": str(tmp_path / "clean")}
    killed = {**env, "LOOKALIKE_STORE_PATH": str(tmp_path / "killed")}
    # Each kill lands in a run that still has work: the first before any upsert, then after a few
    # upserts, then in the search index build (A); after an upsert, then while deleting (B).
    kill_points = {
        "a": [("indexing ", 1), ("upserted", 2), ("building the search index", 1)],
        "b": [("upserted", 1), ("deleting", 1)],
    }
    kills = 0
    with ImageServer(latency_s=0.05) as server:
        offers = make_catalogue(server, 28, seed=5, size=96)
        feeds = {"a": write_yml(tmp_path / "a.yml", offers[:24])}
        for name in ("a", "b"):
            if name == "b":  # the shop's changes between the two runs
                rng = np.random.default_rng(9)
                for offer in offers[4:7]:  # new pictures at the same URLs
                    server.put("/" + offer.picture.split("/", 3)[3], jpeg(offer.category, rng, 96))
                for offer in offers[7:10]:
                    offer.price += 100
                feeds["b"] = write_yml(tmp_path / "b.yml", offers[4:28])
            run = ["run", str(feeds[name]), "--shop", "k", "--mapping", str(MAPPING), "--batch-size", "4"]
            result = indexer(run, clean)
            assert result.returncode == 0, result.stderr
            for marker, count in kill_points[name]:
                kills += run_and_kill([*run, "--concurrency", "2"], killed, marker, count)
            result = indexer(run, killed)  # and a last run to the end
            assert result.returncode == 0, result.stderr
    assert kills >= 4  # (a kill may come too late, when the run ended on its own)
    expected = snapshot(tmp_path / "clean", "k")
    assert len(expected) == 24
    assert_same_index(snapshot(tmp_path / "killed", "k"), expected)


@pytest.fixture(scope="module")
def model_services(model_env, tmp_path_factory):
    """`bentoml serve` of the Embedder and the Detector, each on its own port."""
    logs = tmp_path_factory.mktemp("services")
    processes, urls = [], {}
    try:
        for name, target in (("embedder", "bentos.embedder:Embedder"), ("detector", "bentos.detector:Detector")):
            port = free_port()
            (logs / name).mkdir()
            with open(logs / f"{name}.log", "w") as log:
                processes.append(
                    subprocess.Popen(
                        [
                            str(Path(sys.executable).parent / "bentoml"),
                            "serve",
                            target,
                            "--host",
                            "127.0.0.1",
                            "--port",
                            str(port),
                        ],
                        cwd=ROOT,
                        env={**model_env, "BENTOML_HOME": str(own_bentoml_home(model_env, logs / name))},
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            urls[name] = f"http://127.0.0.1:{port}"
        for (name, url), process in zip(urls.items(), processes):
            wait_until_ready(url, process, logs / f"{name}.log")
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def answered(url: str) -> dict[str, float]:
    """Calls the BentoML server at `url` answered with 200, per endpoint (its /metrics)."""
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text):
        for sample in family.samples:
            if sample.name == "bentoml_service_request_total" and sample.labels["http_response_code"] == "200":
                counts[sample.labels["endpoint"]] = counts.get(sample.labels["endpoint"], 0) + sample.value
    return counts


def test_the_remote_models_index_as_the_local_ones(env, tmp_path, model_services):
    catalogue = tmp_path / "catalogue"
    write_catalogue(catalogue, per_class=3, seed=6, size=96, categories=["dress", "pants"])
    local = {**env, "LOOKALIKE_STORE_PATH": str(tmp_path / "local")}
    remote = {**env, "LOOKALIKE_STORE_PATH": str(tmp_path / "remote")}
    assert indexer(["run", str(catalogue), "--shop", "r", "--mapping", str(MAPPING)], local).returncode == 0
    urls = ["--embedder-url", model_services["embedder"], "--detector-url", model_services["detector"]]
    before = {name: answered(url) for name, url in model_services.items()}
    result = indexer(["run", str(catalogue), "--shop", "r", "--mapping", str(MAPPING), *urls], remote)
    assert result.returncode == 0, result.stderr
    assert "added 6" in result.stderr and f"the services at {model_services['embedder']}" in result.stderr
    assert_same_index(snapshot(tmp_path / "remote", "r"), snapshot(tmp_path / "local", "r"))
    # The batches went as .npy files, not as JSON arrays (~7x slower: `indexer.remote`).
    for name, api in (("embedder", "/embed"), ("detector", "/detect")):
        after = answered(model_services[name])
        assert after.get(api + "_npy", 0) > before[name].get(api + "_npy", 0), (name, after)
        assert after.get(api, 0) == before[name].get(api, 0), (name, after)

    no_detector = indexer(["run", str(catalogue), "--shop", "x", "--embedder-url", model_services["embedder"]], remote)
    assert no_detector.returncode == 2 and "has no /detect API" in no_detector.stderr


def test_the_npy_apis_answer_as_the_json_ones(model_services, embedder_card, detector_card, tmp_path):
    rng = np.random.default_rng(11)
    crop, photo = embedder_card.preset.crop_size, detector_card.preset.size
    for name, api, batch in (
        ("embedder", "embed", rng.integers(0, 256, (5, crop, crop, 3), dtype=np.uint8)),
        ("detector", "detect", rng.integers(0, 256, (3, photo, photo, 3), dtype=np.uint8)),
    ):
        np.save(tmp_path / f"{api}.npy", batch)
        with bentoml.SyncHTTPClient(model_services[name], server_ready_timeout=0, timeout=120) as client:
            as_json = client.call(api, pixels=batch)
            as_npy = client.call(f"{api}_npy", pixels=tmp_path / f"{api}.npy")
        assert isinstance(as_npy, np.ndarray) and as_npy.shape == as_json.shape and len(as_npy) == len(batch)
        np.testing.assert_allclose(as_npy, as_json, atol=1e-5)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def npy_header_only(shape: tuple[int, ...]) -> bytes:
    """A .npy header declaring a uint8 array of `shape`, and no data."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|u1", "fortran_order": False, "shape": shape})
    return buffer.getvalue()


# What each bad upload is (made for the service's image size `s`), and what the 400 says (`{s}`: that size).
BAD_UPLOADS = {
    "text": (lambda s: b"pixels,as,text\n", "could not be read as .npy (it holds pickled objects or is no .npy"),
    "pickle": (lambda s: pickle.dumps({"pixels": 1}), "it holds pickled objects"),
    "object array": (lambda s: npy_bytes(np.array([{"a": 1}], dtype=object)), "Python objects in dtype"),
    "float32": (lambda s: npy_bytes(np.zeros((2, s, s, 3), np.float32)), "has dtype float32"),
    "one image": (lambda s: npy_bytes(np.zeros((s, s, 3), np.uint8)), "has shape ({s}, {s}, 3)"),
    "other size": (lambda s: npy_bytes(np.zeros((2, s // 2, s // 2, 3), np.uint8)), "has shape (2, {h}, {h}, 3)"),
    "no images": (lambda s: npy_bytes(np.zeros((0, s, s, 3), np.uint8)), "holds 0 images"),
    # 200 000 images declared, none sent: refused before anything is allocated.
    "header only": (lambda s: npy_header_only((200_000, s, s, 3)), "holds less data than its header declares"),
}


@pytest.mark.parametrize(
    "service, upload",
    [("embedder", name) for name in BAD_UPLOADS] + [("detector", "text"), ("detector", "other size")],
)
def test_a_bad_npy_upload_is_a_400_saying_what_to_send(model_services, embedder_card, detector_card, service, upload):
    size = {"embedder": embedder_card.preset.crop_size, "detector": detector_card.preset.size}[service]
    api = {"embedder": "embed_npy", "detector": "detect_npy"}[service]
    make_body, message = BAD_UPLOADS[upload]
    response = httpx.post(f"{model_services[service]}/{api}", files={"pixels": ("x.npy", make_body(size))}, timeout=60)
    assert response.status_code == 400, response.text
    assert message.format(s=size, h=size // 2) in response.text
    assert f"uint8 array (n, {size}, {size}, 3)" in response.text  # and what to send instead


def test_the_remote_embedder_splits_long_batches_and_stops_on_a_refusal(model_services, embedder_card, monkeypatch):
    from indexer import remote

    url, crop = model_services["embedder"], embedder_card.preset.crop_size
    crops = np.random.default_rng(12).integers(0, 256, (5, crop, crop, 3), dtype=np.uint8)
    whole = remote.RemoteEmbedder(url, embedder_card)(crops)
    monkeypatch.setattr(remote, "MAX_NPY_IMAGES", 2)
    before = answered(url).get("/embed_npy", 0)
    split = remote.RemoteEmbedder(url, embedder_card)(crops)
    assert answered(url).get("/embed_npy", 0) - before == 3  # 2 + 2 + 1 crops
    for name in ("shape", "color"):
        np.testing.assert_allclose(split[name], whole[name], atol=1e-5)

    with pytest.raises(remote.RemoteError, match=r"/embed at .* failed on pixels \(1, 8, 8, 3\):.*has shape"):
        remote.RemoteEmbedder(url, embedder_card, retries=0)(np.zeros((1, 8, 8, 3), np.uint8))
