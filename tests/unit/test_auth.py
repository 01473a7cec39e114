"""API keys: who may change data and, when the settings say so, who may search."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request

from lookalike.api import auth
from lookalike.api.errors import ApiError
from lookalike.settings import Settings


def request(**headers: str) -> Request:
    raw = [(key.replace("_", "-").lower().encode(), value.encode()) for key, value in headers.items()]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw})


def status(check, req: Request) -> int:
    try:
        asyncio.run(check(req))
    except ApiError as error:
        return error.status
    return 200


@pytest.fixture
def settings(monkeypatch):
    def use(**values) -> None:
        monkeypatch.setattr(auth, "get_settings", lambda: Settings(_env_file=None, **values))

    return use


def test_keys_are_read_from_either_header():
    assert auth.presented_key(request(x_api_key="k1")) == "k1"
    assert auth.presented_key(request(authorization="Bearer k2")) == "k2"
    assert auth.presented_key(request(authorization="Basic k3")) is None
    assert auth.presented_key(request()) is None


def test_writes_need_a_write_key_and_nobody_writes_when_none_is_set(settings):
    settings(api_keys=["w"], read_api_keys=["r"])
    assert status(auth.write_access, request()) == 401
    assert status(auth.write_access, request(x_api_key="r")) == 403
    assert status(auth.write_access, request(x_api_key="w")) == 200
    settings()
    assert status(auth.write_access, request(x_api_key="anything")) == 403


def test_reads_are_open_unless_required(settings):
    settings(api_keys=["w"], read_api_keys=["r"])
    assert status(auth.read_access, request()) == 200
    settings(api_keys=["w"], read_api_keys=["r"], read_keys_required=True)
    assert status(auth.read_access, request()) == 401
    assert status(auth.read_access, request(x_api_key="nope")) == 403
    assert status(auth.read_access, request(x_api_key="r")) == 200
    assert status(auth.read_access, request(authorization="Bearer w")) == 200
