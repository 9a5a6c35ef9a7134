"""The reliability settings the README documents as PAPERWIRE_* reach every service; a service's own name wins."""

from __future__ import annotations

import pytest

from services.classifier.settings import ClassifierSettings
from services.embedder.settings import EmbedderSettings
from services.fetcher.settings import FetcherSettings
from services.notifier.settings import NotifierSettings
from services.parser.settings import ParserSettings

SERVICES = [FetcherSettings, ParserSettings, EmbedderSettings, ClassifierSettings, NotifierSettings]


@pytest.mark.parametrize("settings_class", SERVICES, ids=lambda c: c.__name__)
def test_paperwire_reliability_variables_apply_to_every_service(
    settings_class: type, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.setenv("PAPERWIRE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PAPERWIRE_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("PAPERWIRE_CLAIM_IDLE_MS", "2000")
    monkeypatch.setenv("PAPERWIRE_RETENTION_HOURS", "24")
    settings = settings_class()
    assert (settings.max_attempts, settings.claim_idle_ms, settings.retention_hours) == (2, 2000, 24.0)


def test_a_services_own_variable_wins(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("PAPERWIRE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PAPERWIRE_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("PARSER_MAX_ATTEMPTS", "7")
    assert ParserSettings().max_attempts == 7
    assert FetcherSettings().max_attempts == 2
    assert ParserSettings(max_attempts=3).max_attempts == 3  # and an explicit value over both


def test_a_bad_shared_value_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("PAPERWIRE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PAPERWIRE_MAX_ATTEMPTS", "0")
    with pytest.raises(ValueError, match="max_attempts"):
        ParserSettings()
