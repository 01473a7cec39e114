"""The page's /ui/config.json: the limits it checks and the weights its controls start at."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from lookalike.schemas import WEIGHTS_WITHOUT_DETAIL
from lookalike.settings import Settings
from lookalike.web import build_ui_app


def config(settings: Settings, vector_names: tuple[str, ...] | None) -> dict:
    return TestClient(build_ui_app(settings, vector_names)).get("/config.json").json()


@pytest.mark.parametrize(
    ("vector_names", "expected"),
    [
        (("shape", "color", "detail"), {"shape": 0.125, "color": 0.125, "detail": 0.75}),
        (("shape", "color"), WEIGHTS_WITHOUT_DETAIL),  # an older embedder: the weights it is served with
        (None, {"shape": 0.125, "color": 0.125, "detail": 0.75}),  # no embedder known: the setting
    ],
)
def test_the_page_starts_at_the_weights_the_api_serves(vector_names, expected):
    settings = Settings(_env_file=None, default_weights={"shape": 0.125, "color": 0.125, "detail": 0.75})
    answer = config(settings, vector_names)
    assert answer["default_weights"] == expected
    assert answer["max_upload_bytes"] == settings.max_upload_bytes and answer["max_top_k"] == settings.max_top_k


def test_a_default_without_detail_is_served_as_it_is():
    settings = Settings(_env_file=None, default_weights={"shape": 1.0, "color": 0.0})
    assert config(settings, ("shape", "color"))["default_weights"] == {"shape": 1.0, "color": 0.0}
    assert config(settings, ("shape", "color", "detail"))["default_weights"] == {"shape": 1.0, "color": 0.0}
