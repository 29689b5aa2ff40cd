"""What `bench.explorer_reads` requests: the explorer's filters with the values drawn from
the database (`bench/_explorer_data.py`), and the paths of every scenario, found through the
API itself before measuring (not timed): the first pages as the explorer asks for them on
load, the More pages by following the API's own `nextCursor`, the instance histories and the
definitions' waiting counts, each checked to be served before it is measured."""

from __future__ import annotations

import argparse
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode

import httpx

from bench._common import NONE
from bench._explorer_data import Sample, spread

LIST = "/api/workflows/instances"
PAGE_SIZE = 50
DAY_MS = 86_400_000
#: The explorer's order when its URL names none (explorer.js `DEFAULTS`).
EXPLORER_ORDER = {"orderBy": "updatedAt", "orderDirection": "desc"}
SUB_STATUSES = ("Pending", "Executing", "Suspended", "Finished", "Cancelled", "Faulted")
MORE_PAGES = 3
WINDOWS = 20
PREFIXES = 20


TRENDS = "/api/workflows/trends"


def list_path(params: dict[str, str]) -> str:
    return f"{LIST}?{urlencode({**params, 'pageSize': PAGE_SIZE})}"


@dataclass
class Filter:
    """One of the explorer's filters: the values it is measured with."""

    key: str
    name: str
    """Short: what the figures table and the verdicts call it."""
    label: str
    values: list[dict[str, str]]
    without_total: bool = False
    """Also the first page with `includeTotal=false`."""


def explorer_filters(sample: Sample, args: argparse.Namespace) -> list[Filter]:
    rng = random.Random(args.seed)
    chosen = spread(sample.definitions, args.spread)
    sizes = f"{chosen[-1][1]:,}{NONE}{chosen[0][1]:,}" if chosen else "?"

    def windows(kind: str, low: int, high: int) -> list[dict[str, str]]:
        starts = [rng.randrange(low, max(low + 1, high - DAY_MS)) for _ in range(WINDOWS)]
        order = {"orderBy": "createdAt"} if kind == "created" else {}
        return [
            {
                **EXPLORER_ORDER,
                **order,
                f"{kind}Since": str(start),
                f"{kind}Before": str(start + DAY_MS),
            }
            for start in starts
        ]

    ids = sample.ids[:PREFIXES]
    return [
        Filter(
            "definition_sub",
            "`definitionId`+`subStatus`",
            f"`definitionId`+`subStatus` ({len(chosen)} definitions of {sizes} instances, "
            "each with one of the 6 sub-statuses)",
            [
                {**EXPLORER_ORDER, "definitionId": d, "subStatus": SUB_STATUSES[n % 6]}
                for n, (d, _) in enumerate(chosen)
            ],
        ),
        Filter(
            "source",
            "`sourceId`",
            f"`sourceId` ({', '.join(sample.sources) or 'none'})",
            [{**EXPLORER_ORDER, "sourceId": s} for s in sample.sources],
        ),
        Filter(
            "created",
            "`createdSince`/`Before`, one day, by `createdAt`",
            f"`createdSince`/`createdBefore`, one day ({WINDOWS} windows), `orderBy=createdAt`",
            windows("created", *sample.created_range),
        ),
        Filter(
            "updated",
            "`updatedSince`/`Before`, one day",
            f"`updatedSince`/`updatedBefore`, one day ({WINDOWS} windows)",
            windows("updated", *sample.updated_range),
        ),
        Filter(
            "id_prefix",
            "`idPrefix`",
            f"`idPrefix` ({len(ids)} prefixes of real ids, 3 and 4 characters)",
            [{**EXPLORER_ORDER, "idPrefix": i[: 3 + n % 2]} for n, i in enumerate(ids)],
            without_total=True,
        ),
        Filter(
            "correlation",
            "`correlationId`",
            f"`correlationId` ({min(len(sample.correlation_ids), 50)} of real instances)",
            [{**EXPLORER_ORDER, "correlationId": c} for c in sample.correlation_ids[:50]],
        ),
        Filter(
            "activity",
            "`currentActivity`+`definitionId`+`status=Running`",
            f"`currentActivity`+`definitionId`+`status=Running` ({len(sample.activities)} "
            "definitions, an activity where running instances wait)",
            [
                {**EXPLORER_ORDER, "definitionId": d, "status": "Running", "currentActivity": a}
                for d, a in sample.activities.items()
            ],
        ),
    ]


@dataclass
class Planned:
    key: str
    short: str
    label: str
    paths: list[str]
    requests: list[dict[str, str]] = field(default_factory=list)
    """A listing scenario's requests (the query of each path), for `explain`."""


@dataclass
class Plan:
    scenarios: list[Planned]
    notes: list[str] = field(default_factory=list)


def _matches(totals: Sequence[int]) -> str:
    if not totals:
        return "? matches"
    low, high = min(totals), max(totals)
    return f"{low:,} matches" if low == high else f"{low:,}{NONE}{high:,} matches"


def _filter_unsupported(client: httpx.Client, item: Filter) -> str | None:
    """Why the server cannot be measured on `item` (None: it can)."""
    if not item.values:
        return f"{item.label}: no values to filter by in this database; not measured"
    if item.key != "activity":
        return None
    params = item.values[0]
    response = client.get(list_path(params))
    if response.status_code == 400:
        return f"{item.label}: the server answers 400 (no `currentActivity` filter yet); skipped"
    response.raise_for_status()
    rows = response.json()["data"]
    if any(row.get("currentActivity") != params["currentActivity"] for row in rows):
        return f"{item.label}: the server ignores `currentActivity` (an older server); skipped"
    return None


def discover(base_url: str, sample: Sample, args: argparse.Namespace) -> Plan:
    """The paths of every scenario, found through the API itself (not timed)."""
    plan = Plan([Planned("baseline", "baseline", f"baseline: `{list_path({})}`", [list_path({})])])
    with httpx.Client(base_url=base_url, timeout=300) as client:
        for item in explorer_filters(sample, args):
            why = _filter_unsupported(client, item)
            if why is not None:
                plan.notes.append(why)
                continue
            first: list[dict[str, str]] = []
            more: list[dict[str, str]] = []
            totals: list[int] = []
            for params in item.values:
                first.append({**params, "includeTotal": "true"})
                response = client.get(list_path(first[-1]))
                response.raise_for_status()
                body = response.json()
                totals.append(int(body.get("total", 0)))
                for _ in range(MORE_PAGES):
                    if not body.get("nextCursor"):
                        break
                    more.append({**params, "includeTotal": "false", "cursor": body["nextCursor"]})
                    response = client.get(list_path(more[-1]))
                    response.raise_for_status()
                    body = response.json()
            label = f"{item.label}, {_matches(totals)}"
            plan.scenarios.append(
                Planned(
                    f"{item.key}_first",
                    f"{item.name}, first page",
                    f"{label}: first page",
                    [list_path(q) for q in first],
                    first,
                )
            )
            if item.without_total:
                plan.scenarios.append(
                    Planned(
                        f"{item.key}_first_no_total",
                        f"{item.name}, first page, `includeTotal=false`",
                        f"{label}: first page, `includeTotal=false`",
                        [list_path({**q, "includeTotal": "false"}) for q in first],
                        [{**q, "includeTotal": "false"} for q in first],
                    )
                )
            if more:
                plan.scenarios.append(
                    Planned(
                        f"{item.key}_more",
                        f"{item.name}, More",
                        f"{label}: More (`cursor`, `includeTotal=false`, pages 2{NONE}"
                        f"{MORE_PAGES + 1}; {len(more)} page{'s' * (len(more) > 1)})",
                        [list_path(q) for q in more],
                        more,
                    )
                )
            else:
                plan.notes.append(f"{item.label}: every first page was the last; no More pages")
        plan_history(client, sample, plan)
        plan_activities(client, sample, plan, args)
        plan_trends(client, sample, plan, args)
    return plan


def plan_history(client: httpx.Client, sample: Sample, plan: Plan) -> None:
    for key, short, label, ids in (
        ("history_random", "random instances", "random instances", sample.ids),
        (
            "history_long",
            f"{len(sample.long_history_ids)} long histories",
            "the instances given long histories",
            sample.long_history_ids,
        ),
    ):
        paths = [f"{LIST}/{i}/history" for i in ids]
        if not paths:
            plan.notes.append(f"history of {label}: none in this database; not measured")
            continue
        entries = [len(client.get(p).json().get("entries", [])) for p in paths[:20]]
        low, high = min(entries), max(entries)
        sizes = f"{low:,}" if low == high else f"{low:,}{NONE}{high:,}"
        sizes += " entry" if high == 1 else " entries"
        plan.scenarios.append(
            Planned(
                key,
                f"history, {short}",
                f"`{LIST}/{{id}}/history`, {label} ({len(ids)}; {sizes} each)",
                paths,
            )
        )


def plan_activities(
    client: httpx.Client, sample: Sample, plan: Plan, args: argparse.Namespace
) -> None:
    chosen = spread(sample.definitions, args.spread)
    paths = [f"/api/workflows/definitions/{d}/activities" for d, _ in chosen]
    statuses = [client.get(p).status_code for p in paths]
    if not paths or all(code == 404 for code in statuses):
        plan.notes.append(
            "`/api/workflows/definitions/{id}/activities`: 404 for every definition (the "
            "server has no such endpoint yet); waiting counts not measured"
        )
        return
    if any(code != 200 for code in statuses):
        plan.notes.append(
            f"`/api/workflows/definitions/{{id}}/activities`: {sum(c != 200 for c in statuses)} "
            f"of {len(paths)} definitions answered other than 200 ({sorted(set(statuses))})"
        )
    sizes = f"{chosen[-1][1]:,}{NONE}{chosen[0][1]:,}"
    plan.scenarios += [
        Planned(
            "activities_spread",
            f"waiting counts, {len(paths)} definitions",
            f"`/api/workflows/definitions/{{id}}/activities`, {len(paths)} definitions of "
            f"{sizes} instances",
            paths,
        ),
        Planned(
            "activities_busiest",
            "waiting counts, the busiest definition",
            f"the same, the busiest definition alone ({chosen[0][1]:,} instances)",
            paths[:1],
        ),
    ]


def plan_trends(client: httpx.Client, sample: Sample, plan: Plan, args: argparse.Namespace) -> None:
    """The trend charts: each window for all definitions, and for the spread of them."""
    if client.get(TRENDS).status_code == 404:
        plan.notes.append(f"`{TRENDS}`: 404 (the server has no trends yet); not measured")
        return
    chosen = spread(sample.definitions, args.spread)
    for window in ("hour", "day", "week"):
        everything = f"{TRENDS}?window={window}"
        per_definition = [f"{everything}&definitionId={d}" for d, _ in chosen]
        started = client.get(everything).json()["started"]
        plan.scenarios += [
            Planned(
                f"trends_{window}_all",
                f"trends, {window}, all definitions",
                f"`{everything}`, all definitions ({started:,} started in the window)",
                [everything],
            ),
            Planned(
                f"trends_{window}_definitions",
                f"trends, {window}, {len(chosen)} definitions",
                f"`{everything}&definitionId=…`, {len(chosen)} definitions of "
                f"{chosen[-1][1]:,}{NONE}{chosen[0][1]:,} instances",
                per_definition,
            ),
        ]
