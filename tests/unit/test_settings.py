"""Settings: one env prefix per service, explicit overrides win."""

from __future__ import annotations

import pytest

from shared.settings import service_settings


def test_each_service_reads_its_own_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSILIUM_EXPORT_HTTP_PORT", "9999")
    monkeypatch.setenv("CONSILIUM_SUBMISSION_MAX_ATTEMPTS", "7")
    assert service_settings("export").http_port == 9999
    assert service_settings("submission").max_attempts == 7
    assert service_settings("consensus").http_port == 8083


def test_explicit_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSILIUM_EXPORT_HTTP_PORT", "9999")
    assert service_settings("export", http_port=1234).http_port == 1234


def test_an_unknown_service_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown service"):
        service_settings("billing")


def test_the_periodic_reestimate_is_off_unless_an_interval_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert service_settings("consensus").reestimate_interval_s == 0.0
    monkeypatch.setenv("CONSILIUM_CONSENSUS_REESTIMATE_INTERVAL_S", "3600")
    assert service_settings("consensus").reestimate_interval_s == 3600.0
    monkeypatch.setenv("CONSILIUM_CONSENSUS_REESTIMATE_INTERVAL_S", "-1")
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        service_settings("consensus")
