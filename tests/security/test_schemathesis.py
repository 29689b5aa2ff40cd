"""Property-based tests against the OpenAPI schema: no 5xx, no response off its schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tamma_sync.api import create_app
from tamma_sync.settings import Settings
from tests.support.server import serve_in_thread

#: Streams never end, so they are exercised in tests/feed, not here.
STREAMS = r"^/api/(events|workflows/instances/\{instance_id\}/events)$"


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir: Path = tmp_path_factory.mktemp("schemathesis")
    settings_ = Settings(database_url=f"sqlite:///{data_dir / 'db.sqlite'}", data_dir=data_dir)
    with serve_in_thread(create_app(settings_)) as url:
        yield url


# The schema the server publishes at /openapi.json (building it needs no database).
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi()).exclude(
    path_regex=STREAMS
)


@schema.parametrize()
@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_responses_match_the_schema(
    case: schemathesis.Case[Any], api_url: str
) -> None:
    case.call_and_validate(
        base_url=api_url, checks=[not_a_server_error, response_schema_conformance]
    )
