"""One error shape for every failure: ``{"error": code, "detail": message, "field": name-or-null}``.

Client mistakes get the status that says whose move it is: 400 (malformed, or names something unknown),
404, 408 (the body came too slowly), 413 (too big), 415 (not a format we read), 422 (a value of the wrong
type or range), 503 with `Retry-After` (a part of the service is unreachable, or too busy). Anything else
is our bug: a 500 in the same shape, logged with its traceback and the request id.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from lookalike.api.requestid import current_request_id
from lookalike.schemas import ErrorResponse

log = logging.getLogger(__name__)

# Seconds a client should wait before retrying when a dependency is down or the service is overloaded.
RETRY_AFTER_S = 5


class ApiError(Exception):
    """An error the client can act on; raised anywhere below an endpoint, answered by `_api_error`."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.headers = dict(headers or {})


def unavailable(what: str) -> ApiError:
    return ApiError(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "unavailable",
        f"{what} is unreachable right now; retry in {RETRY_AFTER_S} s",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def overloaded(what: str) -> ApiError:
    return ApiError(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "overloaded",
        f"{what}; retry in {RETRY_AFTER_S} s",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def error_response(
    status: int, code: str, detail: str, field: str | None = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = ErrorResponse(error=code, detail=detail, field=field, request_id=current_request_id())
    return JSONResponse(body.model_dump(), status_code=status, headers=dict(headers or {}))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_disconnect)
    app.add_exception_handler(Exception, _unexpected_error)


async def _api_error(request: Request, error: ApiError) -> JSONResponse:
    # One line, no traceback: a client's mistake is not an incident.
    log.info("%s %s -> %d %s: %s", request.method, request.url.path, error.status, error.code, error.detail)
    return error_response(error.status, error.code, error.detail, error.field, error.headers)


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    first = error.errors()[0]
    field = field_name(first.get("loc", ()), from_request=True)
    detail = f"{field}: {first.get('msg', 'invalid value')}" if field else first.get("msg", "invalid request")
    # As `lookalike.api.inputs.validate`: a value outside a closed list is an unknown value (400).
    code = {"json_invalid": "invalid_json", "literal_error": "unknown_value"}.get(first.get("type"), "invalid_field")
    status = HTTPStatus.UNPROCESSABLE_ENTITY if code == "invalid_field" else HTTPStatus.BAD_REQUEST
    return await _api_error(request, ApiError(status, code, detail, field=field))


async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
    status = HTTPStatus(error.status_code)
    code = status.phrase.lower().replace(" ", "_").replace("-", "_")
    detail = error.detail if isinstance(error.detail, str) and error.detail != status.phrase else status.description
    return await _api_error(request, ApiError(status, code, detail, headers=error.headers))


async def _client_disconnect(request: Request, error: ClientDisconnect) -> JSONResponse:
    # The client hung up while sending its body: nobody reads the answer, and it is not our failure.
    detail = "the client closed the connection before the request body arrived"
    return await _api_error(request, ApiError(HTTPStatus.BAD_REQUEST, "bad_request", detail))


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path)
    return error_response(
        HTTPStatus.INTERNAL_SERVER_ERROR,
        "internal",
        f"an unexpected error on our side; quote request id {current_request_id()} when reporting it",
    )


def field_name(location: tuple | list, *, from_request: bool = False) -> str | None:
    """`("body", "weights", "shape")` -> "weights.shape". FastAPI's locations start with where the value
    was (`from_request`): that part is dropped, since a field may itself be called "query"."""
    parts = [str(part) for part in location]
    if from_request and parts and parts[0] in ("body", "query", "path", "header", "cookie", "form"):
        parts = parts[1:]
    return ".".join(parts) or None


class JsonErrorMiddleware:
    """Gives the errors that never reach our handlers (the router's 404 and 405 for unknown paths and
    methods, BentoML's own) the same JSON shape. Pure ASGI: bodies stream through untouched."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        replaced: dict | None = None

        async def send_json_errors(message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start":
                headers = {key.lower(): value for key, value in message.get("headers", [])}
                status = message["status"]
                if status >= 400 and not headers.get(b"content-type", b"").startswith(b"application/json"):
                    replaced = {"status": status, "headers": headers}
                    return
            elif replaced is not None:
                if not message.get("more_body", False):
                    await _send_replacement(send, replaced["status"], replaced["headers"])
                return
            await send(message)

        await self.app(scope, receive, send_json_errors)


async def _send_replacement(send, status: int, headers: dict[bytes, bytes]) -> None:
    phrase = HTTPStatus(status)
    code = phrase.phrase.lower().replace(" ", "_").replace("-", "_")
    response = error_response(status, code, phrase.description)
    kept = [(key, value) for key, value in headers.items() if key in (b"allow", b"retry-after", b"x-request-id")]
    await send({"type": "http.response.start", "status": status, "headers": [*response.raw_headers, *kept]})
    await send({"type": "http.response.body", "body": response.body})
