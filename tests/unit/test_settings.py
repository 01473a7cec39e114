from pathlib import Path

import pytest

from lookalike.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_documented_in_the_readme():
    readme = README.read_text()
    missing = [name for name in Settings.model_fields if f"`LOOKALIKE_{name.upper()}`" not in readme]
    assert not missing, f"settings missing from the README's table: {missing}"


def test_environment_overrides_defaults(monkeypatch):
    monkeypatch.setenv("LOOKALIKE_QDRANT_URL", "http://qdrant:6333")
    monkeypatch.setenv("LOOKALIKE_OVERSAMPLING", "4")
    settings = Settings(_env_file=None)
    assert settings.qdrant_url == "http://qdrant:6333" and settings.oversampling == 4.0


def test_invalid_values_are_refused(monkeypatch):
    monkeypatch.setenv("LOOKALIKE_OVERSAMPLING", "0.5")
    with pytest.raises(ValueError):
        Settings(_env_file=None)
