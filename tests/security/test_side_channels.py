"""What one tenant can learn of another through what the API shares between them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tamma_sync.api import create_app
from tamma_sync.models import Scope
from tamma_sync.settings import Settings, SourceSettings
from tamma_sync.simulator import ElsaSimulator, SimulatorConfig
from tests.security.conftest import TENANT_A, TENANT_B, Keys, client_for
from tests.support.server import serve_in_thread

SOURCE_OF_A, SOURCE_OF_B = "source-of-a", "source-of-b"


def test_a_tenants_dashboard_etag_moves_with_its_own_writes_only(
    keyed_url: str, keys: Keys
) -> None:
    """Had B's writes moved A's tag, A could count them by polling its own list."""
    with client_for(keyed_url, keys.a) as a, client_for(keyed_url, keys.b) as b:
        assert a.post("/api/workflows/definitions", json={"id": "wf", "name": "F"}).is_success
        tags = {
            compact: a.get("/api/dashboard/workflows", params={"compact": compact}).headers["etag"]
            for compact in (False, True)
        }
        for n in range(5):
            created = b.post("/api/workflows/instances", json={"id": f"b{n}", "definitionId": "wf"})
            assert created.status_code == 201
        for compact, tag in tags.items():
            again = a.get(
                "/api/dashboard/workflows",
                params={"compact": compact},
                headers={"If-None-Match": tag},
            )
            assert (again.status_code, again.headers["etag"]) == (304, tag), compact

        a.post("/api/workflows/instances", json={"id": "a1", "definitionId": "wf"})
        moved = a.get("/api/dashboard/workflows", headers={"If-None-Match": tags[False]})
        assert moved.status_code == 200 and moved.headers["etag"] != tags[False]
        assert [w["instanceCount"] for w in moved.json()] == [1]


@contextmanager
def _serve_with_sources(
    database_url: str, tmp_path: Path, *, public_source_detail: bool = False
) -> Iterator[str]:
    """A server with API keys, syncing one source into tenant A and one into tenant B."""
    elsa = ElsaSimulator(SimulatorConfig(definitions=1, instances=1))
    with serve_in_thread(elsa.app) as elsa_url:
        settings = Settings(
            database_url=database_url,
            data_dir=tmp_path / str(public_source_detail),
            auth_cache_seconds=0,
            public_source_detail=public_source_detail,
            sources=[
                SourceSettings(id=SOURCE_OF_A, url=elsa_url, tenant_id=TENANT_A),
                SourceSettings(id=SOURCE_OF_B, url=elsa_url, tenant_id=TENANT_B),
            ],
        )
        with serve_in_thread(create_app(settings)) as url:
            yield url


def _sources_seen(url: str, key: str | None) -> tuple[dict[str, str] | None, set[str]]:
    """The `sync` of `/readyz` (a ready one), and the sources `/metrics` names."""
    with client_for(url, key) as http:
        ready = http.get("/readyz")
        metrics = http.get("/metrics")
    assert ready.status_code == 200, ready.text
    assert metrics.status_code == 200
    assert "tamma_sync_http_requests_total{" in metrics.text, "the rest stays"
    named = {source for source in (SOURCE_OF_A, SOURCE_OF_B) if source in metrics.text}
    return ready.json().get("sync"), named


def test_readyz_and_metrics_name_sources_to_callers_without_a_key_only_if_allowed(
    keys: Keys, database_url: str, tmp_path: Path
) -> None:
    """Probes and scrapers call without a key: they get the readiness and every metric but
    the per-source ones, which would list every tenant's sources, unless the operator
    allows it (a scraper on a private network). A key that is no longer valid is no key
    here, rather than a 401 that would fail a probe."""
    with _serve_with_sources(database_url, tmp_path) as url:
        for key in (None, keys.revoked, "tsk_not_a_key"):
            assert _sources_seen(url, key) == (None, set()), key
    with _serve_with_sources(database_url, tmp_path, public_source_detail=True) as url:
        sync, named = _sources_seen(url, None)
    assert sync is not None and set(sync) == named == {SOURCE_OF_A, SOURCE_OF_B}


def test_a_key_that_may_view_the_dashboard_sees_its_own_tenants_sources(
    keys: Keys, database_url: str, tmp_path: Path
) -> None:
    with _serve_with_sources(database_url, tmp_path) as url:
        for key, source in ((keys.a, SOURCE_OF_A), (keys.b, SOURCE_OF_B)):
            sync, named = _sources_seen(url, key)
            assert sync is not None and set(sync) == named == {source}
        assert _sources_seen(url, keys.all_but[Scope.DASHBOARD_VIEW]) == (None, set())
