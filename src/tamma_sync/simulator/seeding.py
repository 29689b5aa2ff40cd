"""The seeded starting state: definitions, a million instances in one pass, poisoned rows."""

from __future__ import annotations

import random
from array import array
from typing import Final

from tamma_sync.simulator.catalog import ALTERATION_PLAN, NAMED_TEMPLATES, template_for
from tamma_sync.simulator.clock import PRECISION_UNITS, TICKS_PER_SECOND, duration_ticks, round_down
from tamma_sync.simulator.config import SimulatorConfig
from tamma_sync.simulator.definitions import (
    CLR_MATERIALIZER,
    JSON_MATERIALIZER,
    DefinitionRegistry,
)
from tamma_sync.simulator.ids import DEFINITION_KIND, IdCodec
from tamma_sync.simulator.instances import InstanceStore, SubStatus

_DEFINITIONS_RANDOM: Final = 0xD0
_INSTANCES_RANDOM: Final = 0x1A
_POISON_RANDOM: Final = 0xDEAD
_SECOND: Final = TICKS_PER_SECOND
_WEEK: Final = 7 * 86_400 * _SECOND
#: The share of instances the alteration-plan system workflow runs (seeded and new).
SYSTEM_SHARE: Final = 0.02

# Seeded sub-status mix per random byte: 4% Pending, 4% Executing, 22% Suspended,
# 55% Finished, 5% Cancelled, 10% Faulted.
_STATUS_BYTES: Final = bytes(
    [SubStatus.Pending] * 10
    + [SubStatus.Executing] * 10
    + [SubStatus.Suspended] * 56
    + [SubStatus.Finished] * 141
    + [SubStatus.Cancelled] * 13
    + [SubStatus.Faulted] * 26
)
_RETRY_TABLE: Final = (0,) * 10 + (1,) * 3 + (2,) * 2 + (3,)
#: How long seeded instances of each sub-status ran: (minimum, spread), in ticks.
_DURATIONS: Final = (
    (0, 2 * _SECOND),
    (_SECOND, 300 * _SECOND),
    (60 * _SECOND, 3 * 86_400 * _SECOND),
    (5 * _SECOND, 6 * 3600 * _SECOND),
    (60 * _SECOND, 2 * 86_400 * _SECOND),
    (2 * _SECOND, 3600 * _SECOND),
)


def is_legacy_storage(position: int) -> bool:
    """A few designer (JSON) definitions still declare the obsolete "Workflow" storage
    driver (it matters from 3.2.1, when "Workflow Instance" became the default)."""
    return position % 6 == 2


def seed_definitions(
    registry: DefinitionRegistry, codec: IdCodec, config: SimulatorConfig, start: int
) -> None:
    """`config.definitions` definitions (and ELSA's system workflow if realism adds it)."""
    rng = random.Random(codec.hash(_DEFINITIONS_RANDOM))
    window_start = start - duration_ticks(config.history)
    for position in range(config.definitions):
        template = template_for(position)
        named = position < len(NAMED_TEMPLATES)
        definition_id = template.key if named else codec.encode(DEFINITION_KIND, position)
        code_first = position % 3 == 0 and position > 0
        if position == 0:
            count, published = 3, 3
        elif code_first:
            count, published = 1, 1
        else:
            count = rng.choice((1, 1, 2, 2, 3, 4))
            draft = rng.random() < (0.35 if count > 1 else 0.15)
            published = count - 1 if draft else count
        for version in range(1, count + 1):
            if version > published:
                created = window_start + rng.randrange(duration_ticks(config.history))
            else:
                created = window_start - (count - version + 1) * _WEEK - rng.randrange(_WEEK)
            registry.add(
                definition_id,
                template,
                materializer=CLR_MATERIALIZER if code_first else JSON_MATERIALIZER,
                version=version,
                created_at=round_down(created, rng.getrandbits(4)),
                is_latest=version == count,
                is_published=version == published,
                revision=rng.randrange(1, 3) if version > published else 0,
                legacy_storage=is_legacy_storage(position),
            )
    if config.realism.system_workflows and config.release.has_system_workflows:
        # Code-first, read-only, published: registered when ELSA starts.
        registry.add(
            ALTERATION_PLAN.key,
            ALTERATION_PLAN,
            materializer=CLR_MATERIALIZER,
            version=1,
            created_at=round_down(window_start - 4 * _WEEK, 15),
            is_latest=True,
            is_published=True,
            is_system=True,
        )


def _version_table(registry: DefinitionRegistry, codec: IdCodec) -> list[int]:
    """65,536 slots of version rows, weighted like real traffic, for seeding by bits.

    Each published version carries 80% of its definition's instances, older versions
    share the rest; Tamma's mentorship workflow is the busiest; a system workflow gets
    `SYSTEM_SHARE`.
    """
    rng = random.Random(codec.hash(_INSTANCES_RANDOM, 1))
    rows: list[int] = []
    weights: list[float] = []
    system: list[int] = []
    for position, definition_id in enumerate(registry.definition_ids()):
        versions = registry.versions(definition_id)
        published = next((v for v in versions if v.is_published), None)
        if published is None:
            continue
        if published.is_system:
            system.append(published.row)
            continue
        weight = 6.0 if position == 0 else float(rng.randint(1, 3))
        older = [v for v in versions if v.version < published.version]
        share = 0.8 if older else 1.0
        rows.append(published.row)
        weights.append(weight * share)
        for version in older:
            rows.append(version.row)
            weights.append(weight * (1 - share) / len(older))
    if system and weights:
        extra = sum(weights) * SYSTEM_SHARE / (1 - SYSTEM_SHARE) / len(system)
        rows += system
        weights += [extra] * len(system)
    elif system:
        rows, weights = system, [1.0] * len(system)
    cumulative: list[float] = []
    total = 0.0
    for weight in weights:
        total += weight
        cumulative.append(total)
    # The row of each slot is the first whose cumulative weight passes the slot's middle:
    # the slots ascend, so one walk finds them all (a bisection per slot costs 80 ms).
    table: list[int] = []
    row, last = 0, len(rows) - 1
    for slot in range(65_536):
        middle = (slot + 0.5) / 65_536 * total
        while row < last and cumulative[row] <= middle:
            row += 1
        table.append(rows[row])
    return table


def seed_instances(
    registry: DefinitionRegistry, codec: IdCodec, config: SimulatorConfig, start: int
) -> InstanceStore:
    """Columns for `config.instances` instances, in one pass over seeded random bits.

    createdAt ascends with the row (jitter under half the spacing, precision rounding
    under a quarter), updatedAt is createdAt plus a duration typical of the sub-status,
    everything before the clock's start.
    """
    count = config.instances
    rng = random.Random(codec.hash(_INSTANCES_RANDOM))
    bits = array("Q")
    bits.frombytes(rng.randbytes(8 * count))
    statuses = rng.randbytes(count).translate(_STATUS_BYTES)
    stage_bytes = rng.randbytes(count)
    table = _version_table(registry, codec) if count else []
    waits = [0 if v is None else len(v.template.waits) for v in registry.rows]
    end = start
    window = duration_ticks(config.history)
    begin = end - window
    spacing = max(window // max(count, 1), 4)
    units = [unit if unit <= spacing // 4 else 1 for unit in PRECISION_UNITS]
    update_units = list(PRECISION_UNITS)
    version_row = array("I")
    sub_status = bytearray(statuses)
    stage = bytearray(count)
    retries = bytearray(count)
    created_ticks = array("q")
    updated_ticks = array("q")
    for i, x in enumerate(bits):
        row = table[x & 0xFFFF]
        status = statuses[i]
        created = begin + i * spacing + (((x >> 16) & 0xFFFFF) * (spacing // 2) >> 20)
        created -= created % units[(x >> 36) & 15]
        lowest, spread = _DURATIONS[status]
        fraction = x >> 48
        duration = lowest + (spread * fraction * fraction * fraction >> 48)
        remaining = end - created
        if duration >= remaining:
            duration = remaining * ((x >> 24) & 0xFF) >> 8
        updated = created + duration
        updated = max(created, updated - updated % update_units[(x >> 40) & 15])
        if status == SubStatus.Finished:
            stage[i] = waits[row]
        elif status != SubStatus.Pending:
            stage[i] = stage_bytes[i] % waits[row]
            retries[i] = _RETRY_TABLE[(x >> 44) & 15]
        version_row.append(row)
        created_ticks.append(created)
        updated_ticks.append(updated)
    return InstanceStore.seeded(
        version_row=version_row,
        sub_status=sub_status,
        stage=stage,
        retries=retries,
        created_ticks=created_ticks,
        updated_ticks=updated_ticks,
    )


def pick_poisoned(store: InstanceStore, codec: IdCodec, count: int) -> set[int]:
    """`count` seeded Suspended rows (fewer if there are not that many), chosen by seed."""
    if count <= 0:
        return set()
    rng = random.Random(codec.hash(_POISON_RANDOM))
    rows = store.row_count
    chosen: set[int] = set()
    for _ in range(64 * count if rows else 0):
        row = rng.randrange(rows)
        if store.sub_status[row] == SubStatus.Suspended:
            chosen.add(row)
            if len(chosen) == count:
                return chosen
    suspended = [r for r in range(rows) if store.sub_status[r] == SubStatus.Suspended]
    rng.shuffle(suspended)
    for row in suspended:
        if len(chosen) == count:
            break
        chosen.add(row)
    return chosen
