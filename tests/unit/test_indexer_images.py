"""indexer.images against a real HTTP server on 127.0.0.1: limits, retries, refusals, the revalidated cache."""

from __future__ import annotations

import asyncio
import io

import pytest
from PIL import Image

from indexer.images import ImageCache, ImageFailure, ImageLoader, sha256
from loadtests.bench_indexer import ImageServer
from lookalike.fetch import ImageFetcher

MAX_BYTES = 50_000


def png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), colour).save(buffer, format="PNG")
    return buffer.getvalue()


RED, BLUE = png((200, 0, 0)), png((0, 0, 200))


@pytest.fixture
def server():
    with ImageServer() as server:
        server.put("/red.png", RED)
        yield server


def loader(tmp_path=None, *, allowed=("127.0.0.1", "localhost"), timeout_s=2.0, **options) -> ImageLoader:
    fetcher = ImageFetcher(timeout_s=timeout_s, max_bytes=MAX_BYTES, allowed_hosts=allowed)
    cache = ImageCache(tmp_path / "cache") if tmp_path is not None else None
    return ImageLoader(fetcher, cache, max_bytes=MAX_BYTES, backoff_s=0.01, **options)


def load(images: ImageLoader, *locations: str):
    """Each location's ImageBytes (with its bytes read) or ImageFailure, in one event loop."""

    async def one(location):
        try:
            image = await images.load(location)
            return image, await images.content(image, location)
        except ImageFailure as failure:
            return failure, None

    async def main():
        try:
            return await asyncio.gather(*map(one, locations))
        finally:
            await images.aclose()

    return asyncio.run(main())


def test_an_image_is_fetched_cached_then_revalidated_with_a_304(server, tmp_path):
    url = server.url("/red.png")
    [(first, data)] = load(loader(tmp_path), url)
    assert (first.origin, first.digest, data) == ("fetched", sha256(RED), RED)
    [(second, data)] = load(loader(tmp_path), url)
    assert (second.origin, second.digest, data) == ("revalidated", sha256(RED), RED)  # the bytes from the cache
    assert server.not_modified == 1 and server.requests["/red.png"] == 2
    server.put("/red.png", BLUE)  # the shop changed the picture: a new ETag, a 200
    [(third, data)] = load(loader(tmp_path), url)
    assert (third.origin, third.digest, data) == ("fetched", sha256(BLUE), BLUE)


def test_last_modified_alone_revalidates(tmp_path):
    with ImageServer(etag=False) as server:
        server.put("/red.png", RED)
        load(loader(tmp_path), server.url("/red.png"))
        [(again, _)] = load(loader(tmp_path), server.url("/red.png"))
    assert again.origin == "revalidated" and server.not_modified == 1


def test_a_damaged_cache_entry_is_fetched_again(server, tmp_path):
    url = server.url("/red.png")
    load(loader(tmp_path), url)
    [entry] = [path for path in (tmp_path / "cache").rglob("*") if path.is_file()]
    entry.write_bytes(entry.read_bytes()[:-10])  # truncated: its header's size and digest no longer hold
    [(_, data)] = load(loader(tmp_path), url)
    assert data == RED and server.requests["/red.png"] == 3  # revalidated (304), then fetched whole


def test_5xx_is_retried_with_backoff_until_it_succeeds(server):
    server.failures["/red.png"] = [503, 500]
    images = loader(retries=3)
    [(_, data)] = load(images, server.url("/red.png"))
    assert data == RED and server.requests["/red.png"] == 3 and images.retried == 2


def test_persistent_5xx_fails_after_the_retries(server):
    server.failures["/red.png"] = [502] * 10
    [(failure, _)] = load(loader(retries=2), server.url("/red.png"))
    assert failure.reason == "fetch: HTTP 502" and server.requests["/red.png"] == 3


def test_4xx_is_not_retried(server):
    server.failures["/red.png"] = [403]
    [(failure, _)] = load(loader(retries=3), server.url("/red.png"))
    [(missing, _)] = load(loader(retries=3), server.url("/missing.png"))
    assert failure.reason == "fetch: HTTP 403" and server.requests["/red.png"] == 1
    assert missing.reason == "fetch: HTTP 404" and server.requests["/missing.png"] == 1


def test_timeouts_are_retried_then_counted(server):
    server.delays["/red.png"] = 1.0
    [(failure, _)] = load(loader(timeout_s=0.2, retries=1), server.url("/red.png"))
    assert failure.reason == "fetch: timeout" and server.requests["/red.png"] == 2


@pytest.mark.parametrize("host", ["127.0.0.1", "10.1.2.3", "169.254.169.254"])
def test_private_addresses_are_refused_without_a_request_or_a_retry(server, host):
    url = f"http://{host}:{server.port}/red.png"
    [(failure, _)] = load(loader(allowed=(), retries=3), url)
    assert failure.reason == "fetch: refused" and "address" in str(failure)
    assert server.requests.total() == 0


def test_the_byte_limit_holds(server):
    server.put("/big.png", b"\x89PNG" + bytes(MAX_BYTES))
    [(failure, _)] = load(loader(), server.url("/big.png"))
    assert failure.reason == "fetch: too large"


def test_concurrency_is_bounded_per_host_and_overall():
    with ImageServer(latency_s=0.1) as server:
        for i in range(12):
            server.put(f"/{i}.png", RED)
        urls = [server.url(f"/{i}.png", host) for i in range(12) for host in ("127.0.0.1", "localhost")][:20]
        results = load(loader(concurrency=3, per_host=2), *urls)
    assert all(data == RED for _, data in results)
    assert server.max_active["127.0.0.1"] <= 2 and server.max_active["localhost"] <= 2
    assert server.max_active[""] == 3  # overall: both hosts together, never more than 3


def test_files_are_read_only_when_allowed(tmp_path):
    picture = tmp_path / "a.png"
    picture.write_bytes(RED)
    [(refused, _)] = load(loader(), str(picture))
    assert refused.reason == "fetch: refused"
    [(image, data)] = load(loader(allow_files=True), str(picture))
    assert (image.origin, data) == ("file", RED)
    (tmp_path / "big.png").write_bytes(bytes(MAX_BYTES + 1))
    [(big, _), (missing, _)] = load(loader(allow_files=True), str(tmp_path / "big.png"), str(tmp_path / "no.png"))
    assert (big.reason, missing.reason) == ("file: too large", "file: unreadable")
