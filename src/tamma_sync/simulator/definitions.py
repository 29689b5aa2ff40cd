"""Workflow definition versions: the rows, ELSA's version rules, and their wire shapes."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, TypeVar

from tamma_sync.simulator.catalog import (
    JSON,
    Step,
    Template,
    build_root,
    steps_of,
    variable_id,
    variables_of,
)
from tamma_sync.simulator.clock import format_ticks
from tamma_sync.simulator.ids import VERSION_KIND, IdCodec
from tamma_sync.simulator.versions import ElsaVersion

TOOL_VERSION: Final = "3.7.0.0"
JSON_MATERIALIZER: Final = "Json"
CLR_MATERIALIZER: Final = "CLR"
_ACTIVATION_STRATEGY: Final = (
    "Elsa.Workflows.ActivationStrategies.AllowAlwaysStrategy, Elsa.Workflows.Core"
)
_INT: Final = re.compile(r"\s*[+-]?\d+\s*")
T = TypeVar("T")


@dataclass(slots=True)
class DefinitionVersion:
    """One version row of a definition (its own `id`; all versions share `definitionId`)."""

    row: int
    id: str
    definition_id: str
    template: Template
    materializer: str
    version: int
    created_at: int
    is_latest: bool
    is_published: bool
    #: How often this draft was edited in place (its tree and variables change with it).
    revision: int = 0
    #: ELSA's own system workflow (`isSystem: true`).
    is_system: bool = False
    #: Its variables still declare the obsolete "Workflow" storage driver.
    legacy_storage: bool = False

    @property
    def is_readonly(self) -> bool:
        """Code-first (CLR) definitions cannot be edited through the API."""
        return self.materializer == CLR_MATERIALIZER


VersionFilter = Callable[[DefinitionVersion], bool]

_VERSION_OPTIONS: Final[dict[str, VersionFilter]] = {
    "Latest": lambda v: v.is_latest,
    "Published": lambda v: v.is_published,
    "LatestOrPublished": lambda v: v.is_latest or v.is_published,
    "LatestAndPublished": lambda v: v.is_latest and v.is_published,
    "Draft": lambda v: not v.is_published,
    "AllVersions": lambda v: True,
}


def parse_version_options(text: str) -> VersionFilter:
    """ELSA's `VersionOptions.FromString`: exact-case tokens or an integer version.

    Raises ValueError for anything else; ELSA's `int.Parse` throws there and answers 500.
    """
    named = _VERSION_OPTIONS.get(text)
    if named is not None:
        return named
    if not _INT.fullmatch(text):
        raise ValueError(f"invalid versionOptions {text!r}")
    number = int(text)
    return lambda v: v.version == number


class DefinitionRegistry:
    """All definition version rows, ELSA's save/publish/delete rules, and their JSON."""

    def __init__(self, codec: IdCodec, release: ElsaVersion) -> None:
        self._codec = codec
        self._release = release
        self.rows: list[DefinitionVersion | None] = []
        self.by_id: dict[str, DefinitionVersion] = {}
        self._by_definition: dict[str, list[DefinitionVersion]] = {}
        self._roots: dict[tuple[int, int], dict[str, JSON]] = {}
        self._steps: dict[tuple[int, int], list[Step]] = {}

    def add(
        self,
        definition_id: str,
        template: Template,
        *,
        materializer: str,
        version: int,
        created_at: int,
        is_latest: bool,
        is_published: bool,
        revision: int = 0,
        is_system: bool = False,
        legacy_storage: bool = False,
    ) -> DefinitionVersion:
        """Store a new version row."""
        row = len(self.rows)
        entry = DefinitionVersion(
            row=row,
            id=self._codec.encode(VERSION_KIND, row),
            definition_id=definition_id,
            template=template,
            materializer=materializer,
            version=version,
            created_at=created_at,
            is_latest=is_latest,
            is_published=is_published,
            revision=revision,
            is_system=is_system,
            legacy_storage=legacy_storage,
        )
        self.rows.append(entry)
        self.by_id[entry.id] = entry
        self._by_definition.setdefault(definition_id, []).append(entry)
        return entry

    def definition_ids(self) -> list[str]:
        """Every definitionId, oldest first."""
        return list(self._by_definition)

    def versions(self, definition_id: str) -> list[DefinitionVersion]:
        """The version rows of one definition, oldest first (empty if unknown)."""
        return list(self._by_definition.get(definition_id, ()))

    def latest(self, definition_id: str) -> DefinitionVersion | None:
        """The row flagged isLatest."""
        return next((v for v in self.versions(definition_id) if v.is_latest), None)

    def published(self, definition_id: str) -> DefinitionVersion | None:
        """The row flagged isPublished, if any."""
        return next((v for v in self.versions(definition_id) if v.is_published), None)

    def save_draft(self, definition_id: str, now: int) -> tuple[DefinitionVersion, bool]:
        """ELSA's "save draft": edit the unpublished latest row in place, else add version+1.

        Returns the row and whether it was edited in place.
        """
        latest = self._editable_latest(definition_id)
        if not latest.is_published:
            latest.revision += 1
            return latest, True
        latest.is_latest = False
        draft = self.add(
            definition_id,
            latest.template,
            materializer=latest.materializer,
            version=latest.version + 1,
            created_at=now,
            is_latest=True,
            is_published=False,
            legacy_storage=latest.legacy_storage,
        )
        return draft, False

    def publish(self, definition_id: str) -> DefinitionVersion:
        """Publish the latest row (flags only: ELSA records no timestamp for it)."""
        latest = self._editable_latest(definition_id)
        for version in self._by_definition[definition_id]:
            version.is_published = version is latest
        return latest

    def _editable_latest(self, definition_id: str) -> DefinitionVersion:
        latest = self.latest(definition_id)
        if latest is None:
            raise KeyError(definition_id)
        if latest.is_readonly:
            raise ValueError(f"definition {definition_id!r} is read-only (code-first)")
        return latest

    def remove_definition(self, definition_id: str) -> list[DefinitionVersion]:
        """Hard-delete every version of a definition; returns the removed rows."""
        removed = self._by_definition.pop(definition_id, [])
        for version in removed:
            self._forget(version)
        return removed

    def remove_version(self, version_id: str) -> DefinitionVersion | None:
        """Delete one version row; the highest remaining version becomes latest."""
        version = self.by_id.get(version_id)
        if version is None:
            return None
        self._forget(version)
        remaining = self._by_definition[version.definition_id]
        remaining.remove(version)
        if not remaining:
            del self._by_definition[version.definition_id]
        elif version.is_latest:
            remaining[-1].is_latest = True
        return version

    def _forget(self, version: DefinitionVersion) -> None:
        self.rows[version.row] = None
        del self.by_id[version.id]

    def all_versions(self) -> Iterable[DefinitionVersion]:
        """Every live row in insertion order."""
        return (v for v in self.rows if v is not None)

    def root(self, version: DefinitionVersion) -> dict[str, JSON]:
        """The activity tree of a version (cached; treat as read-only)."""
        key = (version.row, version.revision)
        tree = self._roots.get(key)
        if tree is None:
            tree = build_root(self._codec, version.template, version.version, version.revision)
            self._roots[key] = tree
        return tree

    def steps(self, version: DefinitionVersion) -> list[Step]:
        """The top-level steps of a version (cached; treat as read-only)."""
        key = (version.row, version.revision)
        steps = self._steps.get(key)
        if steps is None:
            steps = steps_of(version.template, version.version, version.revision)
            self._steps[key] = steps
        return steps

    def variables(self, version: DefinitionVersion) -> list[JSON]:
        """The `variables` of a version's model; `storageDriverTypeName` follows the
        release and the definition's driver (see versions.py)."""
        driver = self._release.storage_driver(version.legacy_storage)
        result: list[JSON] = []
        for spec in variables_of(version.template, version.revision):
            item: dict[str, JSON] = {
                "id": variable_id(self._codec, version.template, spec.name),
                "name": spec.name,
                "typeName": spec.type_name,
                "isArray": False,
            }
            if spec.default is not None:
                item["value"] = spec.default
            item["storageDriverTypeName"] = driver
            result.append(item)
        return result

    def summary(self, version: DefinitionVersion) -> dict[str, JSON]:
        """A `LinkedWorkflowDefinitionSummary` item of the list endpoint."""
        item: dict[str, JSON] = {
            "links": item_links(version),
            "isMaterializerAvailable": True,
            "id": version.id,
            "definitionId": version.definition_id,
            "name": version.template.name,
        }
        if version.template.description is not None:
            item["description"] = version.template.description
        item |= {"version": version.version, "toolVersion": TOOL_VERSION}
        item |= {"isLatest": version.is_latest, "isPublished": version.is_published}
        if version.is_readonly:
            item["providerName"] = CLR_MATERIALIZER
        item |= {
            "materializerName": version.materializer,
            "createdAt": format_ticks(version.created_at),
            "isReadonly": version.is_readonly,
        }
        return item

    def model(self, version: DefinitionVersion) -> dict[str, JSON]:
        """The full `LinkedWorkflowDefinitionModel`."""
        template = version.template
        issue_flow = template.root_type == "Elsa.Flowchart"
        input_name, input_type = ("IssueNumber", "Int32") if issue_flow else ("StoryId", "String")
        if template.is_system:
            input_name, input_type = "Plan", "Object"
        options: dict[str, JSON] = {
            "usableAsActivity": False,
            "autoUpdateConsumingWorkflows": False,
        }
        if not version.is_readonly:
            options["activationStrategyType"] = _ACTIVATION_STRATEGY
        model: dict[str, JSON] = {
            "id": version.id,
            "definitionId": version.definition_id,
            "name": template.name,
        }
        if template.description is not None:
            model["description"] = template.description
        model |= {
            "createdAt": format_ticks(version.created_at),
            "version": version.version,
            "toolVersion": TOOL_VERSION,
            "variables": self.variables(version),
            "inputs": [
                {
                    "type": input_type,
                    "name": input_name,
                    "displayName": input_name,
                    "description": f"The {input_name} the workflow works on",
                    "category": "Primitives",
                    "uiHint": "singleline",
                    "isArray": False,
                }
            ],
            "outputs": [
                {
                    "type": "Object",
                    "name": "Result",
                    "displayName": "Result",
                    "description": "",
                    "category": "Primitives",
                    "isArray": False,
                }
            ],
            "outcomes": ["Done"],
            "customProperties": {} if version.is_readonly else {"logPersistenceConfig": {}},
            "isReadonly": version.is_readonly,
        }
        if self._release.has_system_workflows:
            model["isSystem"] = version.is_system
        model |= {
            "isLatest": version.is_latest,
            "isPublished": version.is_published,
            "options": options,
            "usableAsActivity": False,
            "root": self.root(version),
            "links": item_links(version),
        }
        return model


def _link(href: str, rel: str, method: str) -> JSON:
    return {"href": href, "rel": rel, "method": method}


def item_links(version: DefinitionVersion) -> list[JSON]:
    """Per-definition links (hrefs relative to the API prefix, as ELSA sends them)."""
    base = f"/workflow-definitions/{version.definition_id}"
    links = [
        _link(base, "self", "GET"),
        _link(f"/workflow-definitions/by-definition-id/{version.definition_id}", "self", "GET"),
        _link(f"{base}/versions", "versions", "GET"),
        _link(f"{base}/bulk-dispatch", "bulk-dispatch", "POST"),
        _link(f"{base}/dispatch", "dispatch", "POST"),
        _link(f"{base}/execute", "execute", "POST"),
        _link(f"{base}/export", "export", "GET"),
    ]
    if not version.is_readonly:
        links += [
            _link(f"{base}/publish", "publish", "POST"),
            _link(f"{base}/retract", "retract", "POST"),
            _link(base, "delete", "DELETE"),
            _link(f"{base}/import", "import", "PUT"),
            _link(f"{base}/update-references", "update-references", "POST"),
        ]
    return links


LIST_LINKS: Final = [
    _link("/workflow-definitions", "self", "GET"),
    _link("/workflow-definitions/validation/is-name-unique", "is-name-unique", "GET"),
    _link("/workflow-definitions/query/count", "count", "GET"),
    _link("/workflow-definitions/many-by-id", "many-by-id", "GET"),
    _link(
        "/bulk-actions/delete/workflow-definitions/by-definition-id",
        "bulk-delete-by-definition-id",
        "POST",
    ),
    _link("/bulk-actions/delete/workflow-definitions/by-id", "bulk-delete-by-id", "POST"),
    _link("/bulk-actions/publish/workflow-definitions/by-definition-ids", "bulk-publish", "POST"),
    _link("/bulk-actions/retract/workflow-definitions/by-definition-ids", "bulk-retract", "POST"),
    _link("/workflow-definitions/import", "import", "POST"),
    _link("/workflow-definitions/import-files", "import-files", "POST"),
    _link("/workflow-definitions", "create", "POST"),
]


@dataclass(frozen=True, slots=True)
class DefinitionQuery:
    """The filters, order and page of `GET /workflow-definitions`."""

    version_filter: VersionFilter | None = None
    definition_ids: frozenset[str] | None = None
    ids: frozenset[str] | None = None
    materializer: str | None = None
    search_term: str | None = None
    is_system: bool | None = None
    order_by: str = "Name"
    descending: bool = False
    page: int | None = None
    page_size: int | None = None

    def matches(self, version: DefinitionVersion) -> bool:
        """Whether a row passes every filter."""
        if self.version_filter is not None and not self.version_filter(version):
            return False
        if self.definition_ids is not None and version.definition_id not in self.definition_ids:
            return False
        if self.ids is not None and version.id not in self.ids:
            return False
        if self.materializer is not None and version.materializer != self.materializer:
            return False
        if self.is_system is not None and version.is_system != self.is_system:
            return False
        term = (self.search_term or "").strip()
        if term:
            lowered = term.lower()
            return (
                lowered in version.template.name.lower()
                or lowered in (version.template.description or "").lower()
                or term in version.id
                or term in version.definition_id
            )
        return True

    def run(self, versions: Iterable[DefinitionVersion]) -> tuple[list[DefinitionVersion], int]:
        """The requested page and the total number of matching rows."""
        matching = [v for v in versions if self.matches(v)]
        keys: dict[str, Callable[[DefinitionVersion], int | str]] = {
            "Created": lambda v: v.created_at,
            "Version": lambda v: v.version,
            "Name": lambda v: v.template.name,
        }
        matching.sort(key=keys[self.order_by], reverse=self.descending)
        return page_of(matching, self.page, self.page_size), len(matching)


def page_of(items: list[T], page: int | None, page_size: int | None) -> list[T]:
    """ELSA's PageArgs: no pageSize means everything; page alone is ignored; zero-based."""
    if page_size is None:
        return items
    offset = max((page or 0) * page_size, 0)
    if page_size < 0:
        return items[offset:]
    return items[offset : offset + page_size]
