"""Fetching image URLs from untrusted input without becoming a proxy into the private network (SSRF).

The API fetches photos given as `image_url`, and the indexer fetches catalogue images, through one
`ImageFetcher`. Every hop of a fetch (the URL and each redirect, followed by hand) must be http or
https, carry no user:password, and name a host. Its host is resolved, and the fetch is refused when
any address it resolves to is private, loopback, link-local, shared (100.64/10), multicast,
reserved, unspecified, an IPv6 wrapping of one of those, or a cloud metadata address, unless the
host is listed in `allowed_hosts`. Metadata endpoints are refused even when listed: no image lives
there, and the credentials they hand out are what an attacker is after.

DNS rebinding (a name resolving to a public address when checked, then to 10.0.0.5 when connected)
is closed by checking inside the connection itself: `PinnedBackend.connect_tcp` resolves the host,
checks the addresses and connects to exactly the addresses it checked, so no second lookup happens.
TLS still verifies the certificate for, and sends SNI with, the hostname, because httpcore passes
the hostname to `start_tls` separately from the address connected to.

Failures raise `FetchError`, whose `status` is the HTTP status the API should answer:

- 400: the URL is refused (invalid, not http(s), has user:password, no host, a refused address);
- 413: the body is larger than `max_bytes` (by its Content-Length or while it streams);
- 415: the server says the body is not an image (text/html, JSON, video...);
- 422: the remote end failed us: an error status, too many redirects, no such host, unreachable,
  or the whole fetch took longer than `timeout_s`. A 4xx rather than a 5xx because the URL the
  client gave is what does not work, not this service.

Its `reason` says what happened in a few fixed words, for counting failures ("refused", "HTTP 404",
"timeout", ...), and `retryable` whether trying again later may succeed: a timeout, a connection
that failed, or the server answering 5xx, 408 or 429. A refusal, a 4xx, an oversized body or a
page that is not an image will fail again.

`ImageFetcher.fetch` returns the bytes; `ImageFetcher.fetch_conditional` revalidates a copy the
caller keeps (the indexer's image cache) with If-None-Match / If-Modified-Since, and says whether
the server answered 304 Not Modified.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import httpcore
import httpx

from lookalike import __version__
from lookalike.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Metadata services hand out cloud credentials: refused even for hosts in `allowed_hosts`.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address) for address in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
METADATA_HOSTNAMES = frozenset({"metadata.google.internal", "metadata.goog"})
SHARED_NETWORK = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT; not `is_private` in Python 3.11

# Some CDNs serve images as octet-stream, so only types that are clearly something else are refused;
# whatever passes is still decoded (and refused if it is not an image) by `lookalike.images`.
NOT_IMAGE_MAIN_TYPES = frozenset({"text", "audio", "video", "font", "multipart"})
NOT_IMAGE_TYPES = frozenset({"application/json", "application/xml", "application/xhtml+xml", "application/pdf"})

HEADERS = {
    "User-Agent": f"Lookalike/{__version__} (image fetcher)",
    "Accept": "image/*",
    # Uncompressed, so that the bytes counted against `max_bytes` are the bytes that arrive.
    "Accept-Encoding": "identity",
}


# 4xx statuses a later try may get past (request timeout, too many requests); 5xx are retryable too.
RETRYABLE_STATUSES = frozenset({408, 429})


class FetchError(ValueError):
    """An image URL could not be fetched; `status` is the HTTP status to answer, the message what to fix.

    `reason`: what happened, in a few fixed words (see the module docstring); `retryable`: whether
    trying again later may succeed.
    """

    def __init__(self, status: int, message: str, *, reason: str | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason or _REASONS.get(status, "failed")
        self.retryable = retryable


_REASONS = {400: "refused", 413: "too large", 415: "not an image", 422: "failed"}


@dataclass(frozen=True)
class Fetched:
    """What `ImageFetcher.fetch_conditional` got: the body (b"" when `not_modified`) and the validators
    the server sent with it, for the next revalidation."""

    content: bytes
    not_modified: bool = False
    etag: str | None = None
    last_modified: str | None = None


def normalise_host(host: str) -> str:
    """Lower-case, without IPv6 brackets or a trailing dot, so that `allowed_hosts` matches exactly one way."""
    return host.strip("[]").rstrip(".").lower()


def refusal_reason(address: IPAddress, *, allowed: bool) -> str | None:
    """Why connecting to `address` is refused ("a private address"...), or None when it may be connected to."""
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if allowed:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        # ::ffff:10.0.0.5 and 2002:0a00:0005:: (6to4) reach the IPv4 address inside them.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return refusal_reason(embedded, allowed=False)
    for kind, matches in (
        ("loopback", address.is_loopback),
        ("unspecified", address.is_unspecified),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("shared (carrier-grade NAT)", address in SHARED_NETWORK),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("non-public", not address.is_global),
    ):
        if matches:
            return f"a {kind} address"
    return None


async def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, without blocking the event loop; numeric forms come back normalised."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise FetchError(
            422, f"image_url host {host!r} does not resolve ({error.strerror}); check the URL", reason="no such host"
        ) from None
    return list(dict.fromkeys(info[4][0] for info in infos))


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses it has just checked, so a rebinding resolver has no second lookup to answer."""

    def __init__(self, allowed_hosts: Iterable[str]) -> None:
        self.allowed_hosts = frozenset(normalise_host(host) for host in allowed_hosts)
        self.connector = httpcore.AnyIOBackend()

    async def checked_addresses(self, host: str, port: int) -> list[str]:
        """`host`'s addresses, refusing the whole host if any of them is refused (round-robin DNS could pick it)."""
        allowed = normalise_host(host) in self.allowed_hosts
        addresses = await resolve(host, port)
        for address in addresses:
            reason = refusal_reason(ipaddress.ip_address(address), allowed=allowed)
            if reason is not None:
                raise FetchError(400, f"image_url host {host!r} resolves to {address}, {reason}; give a public URL")
        return addresses

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        last_error: Exception | None = None
        for address in await self.checked_addresses(host, port):
            try:
                return await self.connector.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                last_error = error
        raise last_error or httpcore.ConnectError(f"no address to connect to for {host}")

    async def sleep(self, seconds: float) -> None:
        await self.connector.sleep(seconds)


# httpx's own transport builds its pool without a way to pass a network backend, so the pool is built
# here; its errors are translated to httpx's, as httpx's transport does, so callers see one family.
HTTPCORE_TO_HTTPX_ERRORS = (
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.ProxyError, httpx.ProxyError),
)


@contextlib.contextmanager
def httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as error:
        for core_type, httpx_type in HTTPCORE_TO_HTTPX_ERRORS:
            if isinstance(error, core_type):
                raise httpx_type(str(error)) from error
        raise


class PinnedStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterator[bytes]) -> None:
        self.stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with httpx_errors():
            async for chunk in self.stream:
                yield chunk

    async def aclose(self) -> None:
        await self.stream.aclose()


class PinnedTransport(httpx.AsyncBaseTransport):
    """An httpx transport whose connections all go through `PinnedBackend`."""

    def __init__(self, backend: PinnedBackend, limits: httpx.Limits | None = None) -> None:
        limits = limits or httpx.Limits()  # httpx's defaults, not httpcore's 10 connections
        self.pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with httpx_errors():
            response = await self.pool.handle_async_request(core_request)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=PinnedStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self.pool.aclose()


def checked_url(url: str | httpx.URL) -> httpx.URL:
    """`url` parsed, if it is one we may fetch; the address check happens when connecting."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as error:
        raise FetchError(400, f"image_url is not a valid URL ({error}); give an http or https URL") from None
    if parsed.scheme not in ("http", "https"):
        raise FetchError(400, f"image_url {url} is not http or https; give an http or https URL")
    if parsed.userinfo:
        raise FetchError(400, "image_url carries a user name or password; give a URL without them")
    if not parsed.host:
        raise FetchError(400, f"image_url {url} names no host; give a full http or https URL")
    if normalise_host(parsed.host) in METADATA_HOSTNAMES:
        raise FetchError(400, f"image_url host {parsed.host} is a cloud metadata service; give a public URL")
    return parsed


def redirect_target(response: httpx.Response) -> httpx.URL:
    location = response.headers["Location"]
    try:
        return response.url.join(location)
    except httpx.InvalidURL:
        raise FetchError(
            422,
            f"image_url redirects to {location!r}, which is not a URL; give the image's own URL",
            reason="bad redirect",
        ) from None


def check_content_type(response: httpx.Response) -> None:
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type.split("/")[0] in NOT_IMAGE_MAIN_TYPES or content_type in NOT_IMAGE_TYPES:
        raise FetchError(415, f"image_url serves {content_type}, not an image; give the URL of the image itself")


def check_declared_length(response: httpx.Response, max_bytes: int) -> None:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(413, f"the image at image_url is {declared} bytes; the limit is {max_bytes}")


async def read_limited(response: httpx.Response, max_bytes: int) -> bytes:
    """The body, read until it ends or passes `max_bytes`; a missing or lying Content-Length changes nothing."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise FetchError(413, f"the image at image_url is over {max_bytes} bytes, the limit")
    return bytes(body)


class ImageFetcher:
    """Fetches image bytes from untrusted URLs; one per process, shared by concurrent requests."""

    def __init__(
        self,
        *,
        timeout_s: float = 5.0,
        max_redirects: int = 3,
        max_bytes: int = 15 * 1024 * 1024,
        allowed_hosts: Iterable[str] = (),
        limits: httpx.Limits | None = None,
    ) -> None:
        """`limits`: the connection pool's (httpx's defaults: 100 connections, 20 kept alive)."""
        self.timeout_s = timeout_s
        self.max_redirects = max_redirects
        self.max_bytes = max_bytes
        # trust_env=False: a proxy from HTTP(S)_PROXY would do its own lookup and connect, unchecked.
        self.client = httpx.AsyncClient(
            transport=PinnedTransport(PinnedBackend(allowed_hosts), limits),
            headers=HEADERS,
            timeout=timeout_s,
            follow_redirects=False,
            trust_env=False,
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, limits: httpx.Limits | None = None) -> ImageFetcher:
        return cls(
            timeout_s=settings.fetch_timeout_s,
            max_redirects=settings.fetch_max_redirects,
            max_bytes=settings.max_upload_bytes,
            allowed_hosts=settings.fetch_allowed_hosts,
            limits=limits,
        )

    async def fetch(self, url: str) -> bytes:
        """The bytes served at `url`, within one `timeout_s` for all hops and the body; raises `FetchError`."""
        return (await self.fetch_conditional(url)).content

    async def fetch_conditional(
        self, url: str, *, etag: str | None = None, last_modified: str | None = None
    ) -> Fetched:
        """As `fetch`, revalidating a copy the caller holds: with `etag` or `last_modified` (from an earlier
        `Fetched`) the request carries If-None-Match / If-Modified-Since, and a 304 comes back as
        `not_modified` with no body. Without them this is `fetch`, with the validators of the answer."""
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self.follow(checked_url(url), headers)
        except (TimeoutError, httpx.TimeoutException):
            raise FetchError(
                422,
                f"image_url took longer than {self.timeout_s:g} s to fetch; try another URL",
                reason="timeout",
                retryable=True,
            ) from None
        except httpx.HTTPError as error:
            raise FetchError(
                422,
                f"image_url could not be fetched ({error}); check the URL",
                reason="connection failed",
                retryable=isinstance(error, httpx.TransportError),
            ) from None

    async def follow(self, url: httpx.URL, headers: dict[str, str] | None = None) -> Fetched:
        """Fetch `url`, following at most `max_redirects` redirects, each target checked as `url` was."""
        for _ in range(self.max_redirects + 1):
            async with self.client.stream("GET", url, headers=headers) as response:
                if not response.has_redirect_location:  # a 304 is a 3xx too, without a Location
                    return await self.read(response)
                url = checked_url(redirect_target(response))
        raise FetchError(
            422,
            f"image_url redirects more than {self.max_redirects} times; give the image's own URL",
            reason="too many redirects",
        )

    async def read(self, response: httpx.Response) -> Fetched:
        validators = {"etag": response.headers.get("ETag"), "last_modified": response.headers.get("Last-Modified")}
        if response.status_code == httpx.codes.NOT_MODIFIED:
            return Fetched(b"", not_modified=True, **validators)
        if not response.is_success:
            status = response.status_code
            raise FetchError(
                422,
                f"image_url answered HTTP {status} {response.reason_phrase}; check the URL",
                reason=f"HTTP {status}",
                retryable=status >= 500 or status in RETRYABLE_STATUSES,
            )
        check_content_type(response)
        check_declared_length(response, self.max_bytes)
        return Fetched(await read_limited(response, self.max_bytes), **validators)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()
