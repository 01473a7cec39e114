"""API keys: endpoints that change data always need one; reads need one when the settings say so.

A key goes in `X-API-Key: <key>` or `Authorization: Bearer <key>`. No key: 401; a key that is not
allowed here: 403. With no write key configured, data-changing endpoints refuse everyone (403):
they are never open by accident.
"""

from __future__ import annotations

import hmac
from http import HTTPStatus

from fastapi import Request
from fastapi.security import APIKeyHeader

from lookalike.api.errors import ApiError
from lookalike.settings import get_settings

# Declared for the OpenAPI document (components.securitySchemes); the check itself is below.
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="A key from LOOKALIKE_API_KEYS.")


def presented_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _allowed(key: str, keys) -> bool:
    # compare_digest on every key: the time taken says nothing about which key came close.
    matches = [hmac.compare_digest(key.encode(), secret.get_secret_value().encode()) for secret in keys]
    return any(matches)


def _check(request: Request, keys, what: str) -> None:
    key = presented_key(request)
    if key is None:
        raise ApiError(
            HTTPStatus.UNAUTHORIZED,
            "unauthorized",
            f"{what} needs an API key in X-API-Key or Authorization: Bearer",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not _allowed(key, keys):
        raise ApiError(HTTPStatus.FORBIDDEN, "forbidden", f"this API key may not {what.removeprefix('this ')}")


async def write_access(request: Request) -> None:
    """For endpoints that change data: a key from `api_keys`."""
    _check(request, get_settings().api_keys, "changing data")


async def read_access(request: Request) -> None:
    """For searches: open unless `read_keys_required`; then a key from `read_api_keys` or `api_keys`."""
    settings = get_settings()
    if settings.read_keys_required:
        _check(request, [*settings.read_api_keys, *settings.api_keys], "searching")
