"""Catalogue images as bytes: fetched over HTTP through the SSRF-safe `lookalike.fetch.ImageFetcher`,
or read from files (the folder source), each with the sha256 of its bytes.

Fetching is bounded by `concurrency` requests in flight overall and `per_host` per host, so one
slow or throttling shop does not hold every slot. A fetch that fails in a way a later try may not
(`FetchError.retryable`: a timeout, a failed connection, 5xx, 408, 429) is tried again up to
`retries` times after an exponential, jittered backoff (`backoff_s`, doubled each time, slots
released while waiting); a refused address, any other 4xx, an oversized body or a page that is
not an image fails at once. Failures raise `ImageFailure`, whose `reason` ("fetch: HTTP 404",
"fetch: refused", "fetch: timeout", "file: too large"...) is what the run summary counts.

`ImageCache` keeps the bytes of every image fetched with a validator (ETag or Last-Modified) on
disk, by the sha256 of its URL. The next fetch of that URL revalidates it (If-None-Match /
If-Modified-Since): a 304 costs a round trip and no body, and its digest comes from the cache's
header without reading the bytes; they are read only when they must be embedded again (after a
model change, say). The cache grows with the catalogue (an image is typically 30-300 KB) and is
never pruned by the indexer: delete the folder to reclaim it, at the price of one full download.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx

from lookalike.fetch import FetchError, ImageFetcher

MAX_BACKOFF_S = 30.0


class ImageFailure(Exception):
    """An image that could not be had; `reason` is the summary's key, the message the details."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_url(location: str) -> bool:
    return location[:8].lower().startswith(("http://", "https://"))


@dataclass(frozen=True)
class CacheEntry:
    """One cached image: where its file is, the digest and size of its bytes, and its validators."""

    path: Path
    url: str
    digest: str
    size: int
    etag: str | None = None
    last_modified: str | None = None


class ImageCache:
    """Image bytes on disk by URL: `root/<ab>/<sha256 of the URL>`, a JSON header line, then the bytes.

    An entry is written to a temporary file and renamed over the old one, so a process killed at
    any moment leaves the old entry or the new one, never half of one (only its temporary file,
    `*.tmp`, which the next write of that URL by the same pid replaces and nothing ever reads).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, url: str) -> Path:
        key = sha256(url.encode())
        return self.root / key[:2] / key

    def lookup(self, url: str) -> CacheEntry | None:
        """The entry for `url` (its header only), or None when there is none or it is unreadable."""
        path = self._path(url)
        try:
            with open(path, "rb") as file:
                header = json.loads(file.readline())
        except (OSError, ValueError):
            return None
        if header.get("url") != url:
            return None
        return CacheEntry(path, url, header["sha256"], header["size"], header.get("etag"), header.get("last_modified"))

    def read(self, entry: CacheEntry) -> bytes | None:
        """The entry's bytes, or None when the file no longer holds them (replaced, truncated, damaged)."""
        try:
            with open(entry.path, "rb") as file:
                file.readline()
                content = file.read()
        except OSError:
            return None
        return content if len(content) == entry.size and sha256(content) == entry.digest else None

    def store(self, url: str, content: bytes, digest: str, etag: str | None, last_modified: str | None) -> None:
        path = self._path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {"url": url, "sha256": digest, "size": len(content), "etag": etag, "last_modified": last_modified}
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with open(temporary, "wb") as file:
            file.write(json.dumps(header).encode() + b"\n")
            file.write(content)
        os.replace(temporary, path)


@dataclass
class ImageBytes:
    """An image's digest, and its bytes now or on demand (`content`): a revalidated image is read from
    the cache only when asked. `origin`: fetched (a 200), revalidated (a 304) or file."""

    digest: str
    origin: Literal["fetched", "revalidated", "file"]
    data: bytes | None = None
    entry: CacheEntry | None = None


class ImageLoader:
    """Fetches (or reads) catalogue images with the limits, retries and cache described in the module docstring.

    `allow_files`: locations that are not http(s) URLs are read as file paths (the folder source);
    otherwise they are refused, so a feed cannot make the indexer read local files.
    """

    def __init__(
        self,
        fetcher: ImageFetcher,
        cache: ImageCache | None = None,
        *,
        max_bytes: int,
        concurrency: int = 32,
        per_host: int = 8,
        retries: int = 3,
        backoff_s: float = 0.5,
        allow_files: bool = False,
    ) -> None:
        if concurrency < 1 or per_host < 1 or retries < 0 or backoff_s < 0:
            raise ValueError("concurrency and per_host must be at least 1, retries and backoff_s at least 0")
        self.fetcher = fetcher
        self.cache = cache
        self.max_bytes = max_bytes
        self.retries = retries
        self.backoff_s = backoff_s
        self.allow_files = allow_files
        self._slots = asyncio.Semaphore(concurrency)
        self._host_slots: defaultdict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(per_host))
        self.retried = 0  # tries after a retryable failure, for the summary

    async def aclose(self) -> None:
        """Close the fetcher's connections (in the event loop that used them)."""
        await self.fetcher.aclose()

    async def load(self, location: str) -> ImageBytes:
        """The image at `location` (URL, or file path when `allow_files`); raises `ImageFailure`."""
        if is_url(location):
            return await self._fetch(location)
        if not self.allow_files:
            raise ImageFailure("fetch: refused", f"{location!r} is not an http(s) URL")
        return await asyncio.to_thread(self._read_file, Path(location))

    async def content(self, image: ImageBytes, location: str) -> bytes:
        """The bytes of `image` (loaded from `location`): in hand, or read from the cache; if the cached
        copy is gone or damaged, fetched again without revalidation."""
        if image.data is not None:
            return image.data
        assert image.entry is not None and self.cache is not None
        data = await asyncio.to_thread(self.cache.read, image.entry)
        if data is None:
            data = (await self._fetch(location, revalidate=False)).data
        assert data is not None
        return data

    def _read_file(self, path: Path) -> ImageBytes:
        try:
            size = path.stat().st_size
            if size > self.max_bytes:
                raise ImageFailure("file: too large", f"{path} is {size} bytes; the limit is {self.max_bytes}")
            data = path.read_bytes()
        except OSError as error:
            raise ImageFailure("file: unreadable", f"{path}: {error.strerror or error}") from None
        return ImageBytes(sha256(data), "file", data)

    async def _fetch(self, url: str, *, revalidate: bool = True) -> ImageBytes:
        entry = await asyncio.to_thread(self.cache.lookup, url) if self.cache is not None and revalidate else None
        etag, last_modified = (entry.etag, entry.last_modified) if entry is not None else (None, None)
        for attempt in range(self.retries + 1):
            try:
                async with self._slot(url):
                    fetched = await self.fetcher.fetch_conditional(url, etag=etag, last_modified=last_modified)
                break
            except FetchError as error:
                if not error.retryable or attempt == self.retries:
                    raise ImageFailure(f"fetch: {error.reason}", str(error)) from None
            self.retried += 1
            await asyncio.sleep(min(MAX_BACKOFF_S, self.backoff_s * 2**attempt) * random.uniform(0.5, 1.5))
        if fetched.not_modified and entry is not None:
            return ImageBytes(entry.digest, "revalidated", entry=entry)
        if fetched.not_modified:  # a 304 to a request that revalidated nothing
            raise ImageFailure("fetch: HTTP 304", f"{url} answered 304 Not Modified to an unconditional request")
        digest = sha256(fetched.content)
        if self.cache is not None and (fetched.etag or fetched.last_modified):
            await asyncio.to_thread(self.cache.store, url, fetched.content, digest, fetched.etag, fetched.last_modified)
        return ImageBytes(digest, "fetched", fetched.content)

    @asynccontextmanager
    async def _slot(self, url: str) -> AsyncIterator[None]:
        """A request slot for `url`'s host, then one of the overall slots (so waiting for a busy host
        holds none of the others)."""
        try:
            host = httpx.URL(url).host
        except httpx.InvalidURL:
            host = ""  # the fetcher refuses it
        async with self._host_slots[host], self._slots:
            yield
