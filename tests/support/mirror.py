"""Compare a mirror with the simulator's ground truth."""

from __future__ import annotations

from typing import Any

from tamma_sync.elsa import ElsaTimestamp
from tamma_sync.models import DEFAULT_TENANT_ID, Definition, Instance
from tamma_sync.simulator import ElsaSimulator
from tamma_sync.store import InstanceQuery, Store

PAGE = 1_000


def _ms(text: str | None) -> int | None:
    return ElsaTimestamp.parse(text).epoch_ms if text is not None else None


async def mirrored_instances(store: Store, tenant_id: str = DEFAULT_TENANT_ID) -> list[Instance]:
    found: list[Instance] = []
    after = None
    while True:
        page = await store.list_instances(
            tenant_id, InstanceQuery(limit=PAGE, after=after, with_total=False)
        )
        found += page.items
        if page.next_after is None:
            return found
        after = page.next_after


def counted_by_definition(instances: list[Instance]) -> dict[str, dict[str | None, int]]:
    """Instances counted per definition and sub-status, as `Store.instance_counts` keeps
    them."""
    counts: dict[str, dict[str | None, int]] = {}
    for item in instances:
        group = counts.setdefault(item.definition_id, {})
        key = item.sub_status.value if item.sub_status else None
        group[key] = group.get(key, 0) + 1
    return counts


def expected_state(
    simulator: ElsaSimulator, *, details: bool = True, include_system: bool = False
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """What the mirror must hold, keyed by id, in the mirror's own vocabulary.

    System definitions and instances (realism's `system_workflows`) are left out unless
    `include_system`. An instance whose variables ELSA cannot tell (the truth's are None:
    poisoned, Pending, or a state without variables on that release) has no `variables`
    entry: the mirror keeps whatever it saw last.
    """
    truth = simulator.snapshot(details=details)
    definitions = {
        d.definition_id: {
            "version_id": d.version_id,
            "version": d.version,
            "name": d.name,
            "description": d.description,
            "is_published": d.is_published,
            "is_latest": d.is_latest,
            "activities": d.activities,
            "connections": d.connections,
            "variables": d.variables,
        }
        for d in truth.definitions.values()
        if include_system or not d.is_system
    }
    instances: dict[str, dict[str, Any]] = {}
    for i in truth.instances.values():
        if i.is_system and not include_system:
            continue
        want: dict[str, Any] = {
            "definition_id": i.definition_id,
            "definition_version_id": i.definition_version_id,
            "definition_version": i.version,
            "status": i.status,
            "sub_status": i.sub_status,
            "correlation_id": i.correlation_id,
            "name": i.name,
            "incident_count": i.incident_count,
            "created_at": _ms(i.created_at),
            "updated_at": _ms(i.updated_at),
            "finished_at": _ms(i.finished_at),
        }
        if details:
            want["current_activity"] = i.current_activity
            if i.variables is not None:
                want["variables"] = i.variables
        instances[i.id] = want
    return definitions, instances


def _definition_view(definition: Definition) -> dict[str, Any]:
    return {
        "version_id": definition.version_id,
        "version": definition.version,
        "name": definition.name,
        "description": definition.description,
        "is_published": definition.is_published,
        "is_latest": definition.is_latest,
        "activities": definition.activities,
        "connections": definition.connections,
        "variables": definition.variables,
    }


def _instance_view(instance: Instance, details: bool) -> dict[str, Any]:
    view: dict[str, Any] = {
        "definition_id": instance.definition_id,
        "definition_version_id": instance.definition_version_id,
        "definition_version": instance.definition_version,
        "status": instance.status,
        "sub_status": instance.sub_status.value if instance.sub_status else None,
        "correlation_id": instance.correlation_id,
        "name": instance.name,
        "incident_count": instance.incident_count,
        "created_at": instance.created_at,
        "updated_at": instance.updated_at,
        "finished_at": instance.finished_at,
    }
    if details:
        view |= {"current_activity": instance.current_activity, "variables": instance.variables}
    return view


async def assert_mirror_equals(
    store: Store,
    simulator: ElsaSimulator,
    *,
    details: bool = True,
    include_system: bool = False,
) -> None:
    """Every definition and instance of ELSA is in the mirror as ELSA has it, and no more
    (system ones only with `include_system`; variables only where ELSA tells them)."""
    want_definitions, want_instances = expected_state(
        simulator, details=details, include_system=include_system
    )
    got_definitions = {
        d.id: _definition_view(d) for d in await store.list_definitions(DEFAULT_TENANT_ID)
    }
    got_instances = {i.id: _instance_view(i, details) for i in await mirrored_instances(store)}
    if not include_system:
        system_definitions = {
            d.definition_id for d in simulator.snapshot(limit=0).definitions.values() if d.is_system
        }
        got_definitions = {
            key: value for key, value in got_definitions.items() if key not in system_definitions
        }
        got_instances = {
            key: value
            for key, value in got_instances.items()
            if value["definition_id"] not in system_definitions
        }
    for key, want in want_instances.items():
        if details and "variables" not in want and key in got_instances:
            got_instances[key].pop("variables", None)
    assert got_definitions.keys() == want_definitions.keys()
    for key, want in want_definitions.items():
        assert got_definitions[key] == want, key
    missing = want_instances.keys() - got_instances.keys()
    extra = got_instances.keys() - want_instances.keys()
    assert not missing and not extra, (sorted(missing)[:5], sorted(extra)[:5])
    wrong = [key for key, want in want_instances.items() if got_instances[key] != want]
    assert not wrong, [(key, got_instances[key], want_instances[key]) for key in wrong[:3]]
