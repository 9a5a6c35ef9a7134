"""The links' HMAC secret is never a constant: unset, one random secret per data directory, private to its user."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from services.api.settings import ApiSettings
from shared.settings import ServiceSettings


def test_unset_secret_is_random_persisted_and_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAPERWIRE_LINK_SECRET", raising=False)
    monkeypatch.setenv("PAPERWIRE_DATA_DIR", str(tmp_path / "data"))
    api, other = ApiSettings(), ServiceSettings()
    assert api.link_secret == other.link_secret  # the api and the notifier sign and verify with one key
    assert len(api.link_secret) >= 32 and "insecure" not in api.link_secret
    path = tmp_path / "data" / "link_secret"
    assert path.read_text() == api.link_secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    monkeypatch.setenv("PAPERWIRE_DATA_DIR", str(tmp_path / "elsewhere"))
    assert ServiceSettings().link_secret != api.link_secret


def test_configured_secret_wins_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPERWIRE_LINK_SECRET", "from-the-environment")
    monkeypatch.setenv("PAPERWIRE_DATA_DIR", str(tmp_path))
    assert ApiSettings().link_secret == "from-the-environment"
    assert not (tmp_path / "link_secret").exists()
