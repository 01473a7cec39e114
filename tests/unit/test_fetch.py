"""`ImageFetcher` against a real HTTP server on 127.0.0.1: what it fetches, and what it refuses before connecting."""

from __future__ import annotations

import asyncio
import io
import ipaddress
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from PIL import Image

from lookalike.fetch import FetchError, ImageFetcher, refusal_reason

MAX_BYTES = 10_000
TIMEOUT_S = 1.0


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = png_bytes()


class Handler(BaseHTTPRequestHandler):
    """Serves one behaviour per path; every request's path is recorded on the server."""

    protocol_version = "HTTP/1.1"  # chunked bodies need it

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        route, _, argument = self.path.lstrip("/").partition("/")
        getattr(self, f"serve_{route.replace('-', '_')}", self.serve_missing)(argument)

    def reply(self, status: int, body: bytes, content_type: str = "image/png", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def serve_image(self, _: str) -> None:
        self.reply(200, PNG)

    def serve_octets(self, _: str) -> None:
        self.reply(200, PNG, content_type="application/octet-stream")

    def serve_hops(self, remaining: str) -> None:
        """/hops/N redirects N times (relative Locations) before the image."""
        hops = int(remaining)
        if hops:
            self.reply(302, b"", Location=f"/hops/{hops - 1}")
        else:
            self.serve_image(remaining)

    def serve_to(self, target: str) -> None:
        """/to/URL redirects to URL."""
        self.reply(302, b"", Location=target)

    def serve_big(self, _: str) -> None:
        self.reply(200, b"\0" * (MAX_BYTES + 1))

    def serve_big_chunked(self, _: str) -> None:
        """A body with no Content-Length that never ends, so only counting while reading can stop it."""
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"\0" * 1024
        with_quiet_disconnect(lambda: [self.wfile.write(b"400\r\n" + chunk + b"\r\n") for _ in range(10_000)])

    def serve_slow(self, _: str) -> None:
        """A small body sent one byte every 0.2 s: each read is quick, the whole fetch is not."""
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", "100")
        self.end_headers()

        def drip() -> None:
            for _ in range(100):
                self.wfile.write(b"\0")
                self.wfile.flush()
                time.sleep(0.2)

        with_quiet_disconnect(drip)

    def serve_page(self, _: str) -> None:
        self.reply(200, b"<html>not an image</html>", content_type="text/html; charset=utf-8")

    def serve_missing(self, _: str) -> None:
        self.reply(404, b"not found", content_type="text/plain")

    def log_message(self, *args) -> None:
        pass  # keep pytest's output for failures


def with_quiet_disconnect(send) -> None:
    """Run `send`, ignoring the client hanging up, which is what a refused body looks like from here."""
    try:
        send()
    except (BrokenPipeError, ConnectionResetError):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.paths = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def base(server) -> str:
    server.paths.clear()
    return f"http://127.0.0.1:{server.server_address[1]}"


def fetch(url: str, *, allowed_hosts=("127.0.0.1",), **options) -> bytes:
    async def run() -> bytes:
        options.setdefault("timeout_s", TIMEOUT_S)
        async with ImageFetcher(max_bytes=MAX_BYTES, allowed_hosts=allowed_hosts, **options) as fetcher:
            return await fetcher.fetch(url)

    return asyncio.run(run())


def refused(url: str, **options) -> FetchError:
    with pytest.raises(FetchError) as caught:
        fetch(url, **options)
    return caught.value


# What is fetched.


def test_allowed_host_is_fetched(base):
    assert fetch(f"{base}/image") == PNG


def test_octet_stream_is_fetched_for_the_decoder_to_judge(base):
    assert fetch(f"{base}/octets") == PNG


def test_redirects_are_followed_up_to_the_limit(base, server):
    assert fetch(f"{base}/hops/3") == PNG
    assert server.paths == ["/hops/3", "/hops/2", "/hops/1", "/hops/0"]


def test_from_settings_reads_the_fetch_settings():
    settings = SimpleNamespace(
        fetch_timeout_s=2.5, fetch_max_redirects=1, max_upload_bytes=123, fetch_allowed_hosts=["Images.Local"]
    )
    fetcher = ImageFetcher.from_settings(settings)
    assert (fetcher.timeout_s, fetcher.max_redirects, fetcher.max_bytes) == (2.5, 1, 123)
    asyncio.run(fetcher.aclose())


# What is refused before connecting (400).


def test_loopback_is_refused_unless_allowed(base, server):
    error = refused(f"{base}/image", allowed_hosts=())
    assert error.status == 400
    assert "127.0.0.1, a loopback address" in str(error)
    assert server.paths == []


@pytest.mark.parametrize(
    "url, address",
    [
        ("http://localhost:{port}/image", ""),
        ("http://[::1]:{port}/image", "::1"),
        ("http://0.0.0.0:{port}/image", "0.0.0.0"),
        ("http://2130706433:{port}/image", "127.0.0.1"),  # decimal 127.0.0.1, normalised by getaddrinfo
        ("http://0x7f.1:{port}/image", "127.0.0.1"),  # hexadecimal, short form
        ("http://[::ffff:127.0.0.1]:{port}/image", ""),
        ("http://10.0.0.1/", "10.0.0.1"),
        ("http://100.64.0.1/", "100.64.0.1"),
        ("http://224.0.0.1/", "224.0.0.1"),
    ],
)
def test_non_public_addresses_are_refused_in_any_spelling(base, server, url, address):
    error = refused(url.format(port=server.server_address[1]), allowed_hosts=())
    assert error.status == 400
    assert f"resolves to {address}" in str(error)
    assert server.paths == []


def test_octal_address_is_refused(server):
    # httpx refuses 0177.0.0.1 as a URL; either way it must never reach 127.0.0.1.
    error = refused(f"http://0177.0.0.1:{server.server_address[1]}/image", allowed_hosts=())
    assert error.status == 400


@pytest.mark.parametrize(
    "target, address",
    [("http://10.0.0.1/", "10.0.0.1"), ("http://169.254.169.254/latest/meta-data/", "169.254.169.254")],
)
def test_redirect_to_a_private_address_is_refused_even_from_an_allowed_host(base, server, target, address):
    started = time.monotonic()
    error = refused(f"{base}/to/{target}")
    assert error.status == 400
    assert f"resolves to {address}" in str(error)
    # Refused before connecting: a connection attempt to an unrouted address would hang until the timeout.
    assert time.monotonic() - started < TIMEOUT_S / 2
    assert server.paths == [f"/to/{target}"]


def test_metadata_address_is_refused_even_when_allowed():
    error = refused("http://169.254.169.254/latest/meta-data/", allowed_hosts=["169.254.169.254"])
    assert error.status == 400
    assert "cloud metadata address" in str(error)


def test_metadata_hostname_is_refused_without_resolving_it():
    error = refused("http://metadata.google.internal/computeMetadata/v1/", allowed_hosts=["metadata.google.internal"])
    assert error.status == 400
    assert "metadata" in str(error)


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://example.com/a.jpg", "gopher://example.com/", "http:///a.jpg", "not a url"],
)
def test_other_schemes_and_hostless_urls_are_refused(url):
    assert refused(url).status == 400


def test_userinfo_is_refused(base, server):
    error = refused(base.replace("http://", "http://user:secret@") + "/image")
    assert error.status == 400
    assert "password" in str(error)
    assert server.paths == []


def test_redirect_to_another_scheme_is_refused(base):
    assert refused(f"{base}/to/file:///etc/passwd").status == 400


@pytest.mark.parametrize(
    "address, reason",
    [
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("192.168.1.1", "a private address"),
        ("fe80::1", "a link-local address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("::ffff:10.0.0.5", "a private address"),
        ("2002:a00:5::", "a private address"),  # 6to4 wrapping 10.0.0.5
        ("240.0.0.1", "a reserved address"),
    ],
)
def test_refusal_reasons(address, reason):
    assert refusal_reason(ipaddress.ip_address(address), allowed=False) == reason


# DNS rebinding: the connection goes to the addresses checked, from the one lookup that was checked.


def fake_resolver(monkeypatch, addresses: list[str]) -> list[str]:
    """Make every host resolve to `addresses`; returns the hosts looked up, in order."""
    lookups = []

    async def resolve(host: str, port: int) -> list[str]:
        lookups.append(host)
        return addresses

    monkeypatch.setattr("lookalike.fetch.resolve", resolve)
    return lookups


def test_connection_goes_to_the_checked_address_without_a_second_lookup(server, monkeypatch):
    # images.example exists nowhere: reaching the server proves the socket was opened to the checked address.
    lookups = fake_resolver(monkeypatch, ["127.0.0.1"])
    url = f"http://images.example:{server.server_address[1]}/image"
    assert fetch(url, allowed_hosts=["Images.Example"]) == PNG
    assert lookups == ["images.example"]


def test_one_private_address_among_public_ones_refuses_the_host(monkeypatch):
    fake_resolver(monkeypatch, ["93.184.216.34", "10.0.0.5"])
    error = refused("http://images.example/a.jpg", allowed_hosts=())
    assert error.status == 400
    assert "resolves to 10.0.0.5, a private address" in str(error)


def test_proxy_settings_in_the_environment_are_ignored(base, monkeypatch):
    # A proxy would do its own lookup and connect, out of reach of the checks.
    monkeypatch.setenv("HTTP_PROXY", "http://10.0.0.1:3128")
    monkeypatch.setenv("ALL_PROXY", "http://10.0.0.1:3128")
    assert fetch(f"{base}/image") == PNG


# What the remote end gets wrong.


def test_more_redirects_than_the_limit_are_refused(base, server):
    error = refused(f"{base}/hops/4")
    assert error.status == 422
    assert "more than 3" in str(error)
    assert len(server.paths) == 4


def test_body_over_the_limit_is_refused_by_its_content_length(base):
    error = refused(f"{base}/big")
    assert error.status == 413
    assert str(MAX_BYTES + 1) in str(error)


def test_chunked_body_over_the_limit_is_refused_while_streaming(base):
    started = time.monotonic()
    error = refused(f"{base}/big-chunked")
    assert error.status == 413
    assert time.monotonic() - started < TIMEOUT_S


def test_slow_body_is_cut_by_the_total_timeout(base):
    started = time.monotonic()
    error = refused(f"{base}/slow", timeout_s=0.5)
    assert error.status == 422
    assert "longer than 0.5 s" in str(error)
    assert time.monotonic() - started < 1.5


def test_error_status_is_reported_with_its_code(base):
    error = refused(f"{base}/nothing-here")
    assert error.status == 422
    assert "HTTP 404" in str(error)


def test_html_page_is_refused_as_not_an_image(base):
    error = refused(f"{base}/page")
    assert error.status == 415
    assert "text/html" in str(error)


def test_unresolvable_host_is_reported():
    error = refused("http://no-such-host.invalid/a.jpg")
    assert error.status == 422
    assert "does not resolve" in str(error)
