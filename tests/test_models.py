"""The typed sub-status next to the legacy status string, and the settings' URL rules."""

from __future__ import annotations

import pytest

from tamma_sync.models import SubStatus, WorkflowStatus, sub_status_from_legacy
from tamma_sync.settings import Settings, normalize_database_url


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("pending", SubStatus.PENDING),
        ("Idle", SubStatus.PENDING),
        ("running", SubStatus.EXECUTING),
        ("Running", SubStatus.EXECUTING),
        ("IN-PROGRESS", SubStatus.EXECUTING),
        ("Suspended", SubStatus.SUSPENDED),
        ("awaiting approval", SubStatus.SUSPENDED),
        ("completed", SubStatus.FINISHED),
        ("Finished", SubStatus.FINISHED),
        ("canceled", SubStatus.CANCELLED),
        ("cancelled", SubStatus.CANCELLED),
        ("failed", SubStatus.FAULTED),
        ("Faulted", SubStatus.FAULTED),
        ("interrupted", SubStatus.INTERRUPTED),
        ("Unknown", None),
        ("", None),
        (None, None),
    ],
)
def test_legacy_status_mapping(status: str | None, expected: SubStatus | None) -> None:
    assert sub_status_from_legacy(status) is expected


def test_sub_status_knows_its_coarse_status() -> None:
    assert {s for s in SubStatus if s.status is WorkflowStatus.FINISHED} == {
        SubStatus.FINISHED,
        SubStatus.CANCELLED,
        SubStatus.FAULTED,
    }
    assert SubStatus.parse(" suspended ") is SubStatus.SUSPENDED
    with pytest.raises(ValueError, match="expected one of Pending"):
        SubStatus.parse("Sleeping")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("sqlite+aiosqlite:////abs/x.db", "sqlite+aiosqlite:////abs/x.db"),
        ("postgresql://u@h:5432/db", "postgresql+asyncpg://u@h:5432/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
    ],
)
def test_database_url_forms(url: str, expected: str) -> None:
    assert normalize_database_url(url) == expected


def test_default_database_is_a_file_in_the_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAMMA_SYNC_DATABASE_URL", raising=False)
    monkeypatch.setenv("TAMMA_SYNC_DATA_DIR", "/srv/tamma")
    assert Settings().resolved_database_url == "sqlite+aiosqlite:////srv/tamma/tamma-sync.db"


def test_sources_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAMMA_SYNC_ELSA_URL", "http://elsa:5000")
    monkeypatch.setenv("TAMMA_SYNC_ELSA_API_KEY", "secret")
    monkeypatch.setenv(
        "TAMMA_SYNC_SOURCES",
        '[{"id": "b", "url": "http://b", "username": "admin", "password": "pw",'
        ' "pollInterval": 5}]',
    )
    sources = Settings().elsa_sources()
    assert [(s.id, s.url, s.poll_interval) for s in sources] == [
        ("elsa", "http://elsa:5000", 2.0),
        ("b", "http://b", 5.0),
    ]
    assert sources[0].api_key is not None and sources[0].api_key.get_secret_value() == "secret"
    assert "secret" not in repr(sources[0])


def test_a_studio_url_is_a_link_a_browser_can_follow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAMMA_SYNC_ELSA_URL", "http://elsa:5000")
    monkeypatch.setenv("TAMMA_SYNC_ELSA_STUDIO_URL", "http://studio:8080")
    monkeypatch.setenv(
        "TAMMA_SYNC_SOURCES", '[{"id": "b", "url": "http://b", "studioUrl": "https://studio.b"}]'
    )
    assert [s.studio_url for s in Settings().elsa_sources()] == [
        "http://studio:8080",
        "https://studio.b",
    ]
    for bad in ("studio:8080", "javascript:alert(1)", "http://admin:pw@studio"):
        monkeypatch.setenv("TAMMA_SYNC_ELSA_STUDIO_URL", bad)
        with pytest.raises(ValueError, match="TAMMA_SYNC_ELSA_STUDIO_URL must be http"):
            Settings()
    monkeypatch.delenv("TAMMA_SYNC_ELSA_STUDIO_URL")
    monkeypatch.setenv("TAMMA_SYNC_SOURCES", '[{"id": "b", "url": "http://b", "studioUrl": "b"}]')
    with pytest.raises(ValueError, match="source 'b': studioUrl must be http"):
        Settings()
