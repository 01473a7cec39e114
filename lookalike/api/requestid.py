"""A request id for every request: taken from the client's `X-Request-ID` when sane, else made here;
echoed in the response header, in error bodies and in every log line written while serving it."""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
# A client's own id is kept only when it cannot forge log lines or blow up headers.
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def current_request_id() -> str | None:
    return _request_id.get()


class RequestIdMiddleware:
    """Pure ASGI middleware (no body buffering), so uploads still stream to the endpoint."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _client_id(scope) or uuid.uuid4().hex
        token = _request_id.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER.lower().encode()]
                message = {**message, "headers": [*headers, (HEADER.lower().encode(), request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _request_id.reset(token)


def _client_id(scope: Scope) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == HEADER.lower().encode():
            text = value.decode("latin-1")
            return text if _SANE_ID.fullmatch(text) else None
    return None


class RequestIdLogFilter(logging.Filter):
    """Prefixes records logged while a request is served with `[request_id]`."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = _request_id.get()
        record.request_id = request_id or "-"
        if request_id and not getattr(record, "_request_id_prefixed", False):
            record.msg = f"[{request_id}] {record.msg}"
            record._request_id_prefixed = True
        return True


def install_log_filter() -> None:
    """Attach the filter to every root handler (BentoML's included), once."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RequestIdLogFilter) for f in handler.filters):
            handler.addFilter(RequestIdLogFilter())
