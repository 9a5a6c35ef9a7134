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


def test_one_ssrf_allow_list_for_the_notifier_and_the_api(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """The notifier's deliveries and the api's test events guard the same user-given URLs: one setting."""
    from services.api.settings import ApiSettings

    monkeypatch.setenv("PAPERWIRE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PAPERWIRE_WEBHOOK_ALLOWED_NETWORKS", '["127.0.0.1/32", "10.0.0.0/8"]')
    assert NotifierSettings().webhook_allowed_networks == ["127.0.0.1/32", "10.0.0.0/8"]
    assert ApiSettings().webhook_allowed_networks == ["127.0.0.1/32", "10.0.0.0/8"]
    monkeypatch.setenv("API_WEBHOOK_ALLOWED_NETWORKS", "[]")
    assert ApiSettings().webhook_allowed_networks == []
    monkeypatch.setenv("PAPERWIRE_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.1/32")
    with pytest.raises(ValueError, match="PAPERWIRE_WEBHOOK_ALLOWED_NETWORKS is not JSON"):
        NotifierSettings()


def test_the_data_dir_moves_the_outbox_and_the_embedding_cache(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """PAPERWIRE_DATA_DIR is where a process writes: the notifier's outbox and the classifier's cache follow it,
    unless their own variables place them elsewhere."""
    monkeypatch.setenv("PAPERWIRE_DATA_DIR", str(tmp_path))
    assert NotifierSettings().outbox_dir == tmp_path / "outbox"
    assert ClassifierSettings().cache_path == tmp_path / "cache" / "embeddings.sqlite"
    monkeypatch.setenv("NOTIFIER_OUTBOX_DIR", str(tmp_path / "mail"))
    monkeypatch.setenv("CLASSIFIER_CACHE_PATH", str(tmp_path / "vectors.sqlite"))
    assert NotifierSettings().outbox_dir == tmp_path / "mail"
    assert ClassifierSettings().cache_path == tmp_path / "vectors.sqlite"
    assert NotifierSettings(outbox_dir="elsewhere").outbox_dir.as_posix() == "elsewhere"


def test_the_allow_list_is_no_setting_of_services_that_send_nowhere(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Every command builds the base settings: a value only the notifier and the api read must not break them."""
    from shared.settings import ServiceSettings

    monkeypatch.setenv("PAPERWIRE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PAPERWIRE_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.1/32")
    assert ServiceSettings().data_dir == tmp_path
    assert ParserSettings().max_attempts == 5


def test_the_old_api_host_allow_list_is_refused_by_name(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from services.api.settings import ApiSettings

    monkeypatch.setenv("PAPERWIRE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("API_WEBHOOK_ALLOW_HOSTS", '["hooks.internal"]')
    with pytest.raises(ValueError, match="API_WEBHOOK_ALLOW_HOSTS is gone"):
        ApiSettings()
