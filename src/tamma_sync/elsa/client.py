"""Async client for the parts of the ELSA 3 REST API a mirror reads, and cancel.

Pages are zero-based and `pageSize` is always sent: ELSA returns the whole table when it
is missing, and `page=1` skips the first page (the old .NET client's bug). System
workflows (`isSystem`, ELSA 3.1+) are left out of every instance and definition listing
unless the client is made with `system_workflows=True`, as Elsa Studio shows them.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, SecretStr

from tamma_sync.elsa.connections import Params
from tamma_sync.elsa.errors import ElsaNotFound, ElsaProtocolError
from tamma_sync.elsa.listings import (
    ChangePage,
    Column,
    Listing,
    PagedScan,
    at_least,
    below,
    require_ascending,
    within,
)
from tamma_sync.elsa.timestamps import ElsaTimestamp
from tamma_sync.elsa.transport import RetryPolicy, Timeouts, Transport
from tamma_sync.elsa.wire import (
    DefinitionList,
    DefinitionPage,
    DefinitionSummary,
    InstanceDetail,
    InstancePage,
    InstanceSummary,
    JournalPage,
    PackageVersion,
    VariableList,
    VariableValue,
    WorkflowDefinition,
)
from tamma_sync.settings import SourceSettings

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

DEFAULT_PAGE_SIZE: Final = 100
#: Version ids per `many-by-id` request: keeps the query string well under URL limits.
DEFINITION_CHUNK_SIZE: Final = 50
#: Definition versions whose variable declarations are kept to name pre-3.3 variables.
DECLARATIONS_KEPT: Final = 256
#: Requests at most to read one group of rows sharing a timestamp, as the group grows.
GROUP_ATTEMPTS: Final = 3
_ROUTE_MISSING: Final = frozenset({404, 405})
_ONE_ATTEMPT: Final = RetryPolicy(attempts=1)
#: For what a person waits for (a page asking for the journal): one retry, soon.
_INTERACTIVE: Final = RetryPolicy(attempts=2, total_seconds=5.0)
#: Where a variable's value lives in an execution context's `properties`, by storage
#: driver: `WorkflowInstanceStorageDriver` (3.2.1+) and the obsolete `WorkflowStorageDriver`
#: (3.0 to 3.2.0, and definitions still declaring it), ELSA's Services/*StorageDriver.cs.
VARIABLE_KEYS: Final = ("Variables", "PersistentVariablesDictionary")


@dataclass(frozen=True, slots=True)
class CreationPage:
    """Instances created in a range, oldest first; `full` when more may follow."""

    rows: list[InstanceSummary]
    full: bool


class ElsaClient:
    """One ELSA 3 server: paging, feature detection, and the reads the mirror needs.

    Use as `async with ElsaClient(...) as elsa:` (or call `aclose()`). Credentials (an API
    key, or a username and password) are handled by the transport and never logged.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_prefix: str = "/elsa/api",
        api_key: SecretStr | str | None = None,
        username: str | None = None,
        password: SecretStr | str | None = None,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        source_id: str | None = None,
        system_workflows: bool = False,
    ) -> None:
        if api_key is not None and username is not None:
            raise ValueError("give an api_key or a username and password, not both")
        if (username is None) != (password is None):
            raise ValueError("username and password go together")
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.source_id = source_id
        self.page_size = page_size
        self.system_workflows = system_workflows
        self._http = Transport(
            base_url,
            api_prefix=api_prefix,
            api_key=_secret(api_key),
            login=_login(username, password),
            timeouts=timeouts or Timeouts(),
            retry=retry or RetryPolicy(),
            source_id=source_id,
        )
        # Feature detection, learned once per client: None until the server has answered.
        self._has_instance_query: bool | None = None  # POST /workflow-instances (3.1+)
        self._has_many_by_id: bool | None = None
        self._has_variables_endpoint: bool | None = None  # GET …/{id}/variables (3.3+)
        self._declarations: OrderedDict[str, WorkflowDefinition | None] = OrderedDict()

    @classmethod
    def from_settings(
        cls,
        source: SourceSettings,
        *,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        system_workflows: bool = False,
    ) -> ElsaClient:
        return cls(
            source.url,
            api_prefix=source.api_prefix,
            api_key=source.api_key,
            username=source.username,
            password=source.password,
            timeouts=timeouts,
            retry=retry,
            page_size=page_size,
            source_id=source.id,
            system_workflows=system_workflows,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ── definitions ───────────────────────────────────────────────────────────────────

    async def package_version(self) -> str:
        """ELSA's package version (`GET /package/version`), e.g. "3.7.1"."""
        return (await self._get("/package/version", PackageVersion)).package_version

    async def list_latest_definitions(
        self, *, page_size: int | None = None
    ) -> Listing[DefinitionSummary]:
        """Every definition's latest version (`versionOptions=Latest`), all pages.

        Ordered by creation so new versions append at the end; a definition listed twice
        (a new version published mid-listing) is reported as a problem.
        """
        size = self._page_size(page_size)

        async def fetch(page: int) -> tuple[list[DefinitionSummary], int | None]:
            params = self._oldest_first(page, size, versionOptions="Latest")
            result = await self._get("/workflow-definitions", DefinitionPage, params=params)
            return result.items, result.total_count

        scan = PagedScan(fetch, key=lambda row: row.definition_id, page_size=size)
        items: list[DefinitionSummary] = []
        async for rows in scan.pages():
            items.extend(rows)
        if scan.problems:
            logger.warning(
                "ELSA definitions listing is inconsistent (source %s): %s",
                self.source_id,
                "; ".join(scan.problems),
            )
        return Listing(tuple(items), scan.total_count, tuple(scan.problems))

    async def get_definition(self, version_id: str) -> WorkflowDefinition:
        """One full definition version by its version id; ElsaNotFound if it is gone."""
        return await self._get(
            f"/workflow-definitions/by-id/{quote(version_id, safe='')}", WorkflowDefinition
        )

    async def get_definitions(self, version_ids: Iterable[str]) -> list[WorkflowDefinition]:
        """Full definitions for these version ids; ids that no longer exist are left out.

        Uses `many-by-id` in chunks; a server without it gets one `by-id` call per id.
        """
        ids = list(dict.fromkeys(version_ids))
        found: list[WorkflowDefinition] = []
        for start in range(0, len(ids), DEFINITION_CHUNK_SIZE):
            chunk = ids[start : start + DEFINITION_CHUNK_SIZE]
            if self._has_many_by_id is not False:
                try:
                    result = await self._get(
                        "/workflow-definitions/many-by-id",
                        DefinitionList,
                        params=[("ids", version_id) for version_id in chunk],
                    )
                except (ElsaNotFound, ElsaProtocolError) as exc:
                    if self._has_many_by_id or exc.status not in _ROUTE_MISSING:
                        raise
                    logger.info("ELSA has no many-by-id route; fetching definitions one by one")
                    self._has_many_by_id = False
                else:
                    self._has_many_by_id = True
                    found.extend(result.items)
                    continue
            for version_id in chunk:
                try:
                    found.append(await self.get_definition(version_id))
                except ElsaNotFound:
                    continue
        return found

    # ── instance listings ─────────────────────────────────────────────────────────────

    async def iter_instance_changes(
        self, since: ElsaTimestamp | None, *, page_size: int | None = None
    ) -> AsyncGenerator[ChangePage]:
        """Instances whose `updatedAt` is at or after `since` (all of them when None).

        Keyset walk: `UpdatedAt >= bound` ordered by UpdatedAt ascending, page 0, and the
        bound moves to the newest `updatedAt` of each full page. A full page of one single
        timestamp is fetched again as that whole group in one request, since ELSA orders
        ties differently from one request to the next and offsets within them skip rows.
        On ELSA 3.0 (no POST listing) it falls back to a full listing filtered here.
        """
        size = self._page_size(page_size)
        bound = since
        cursor = since
        seen: set[tuple[str, int | None]] = set()
        while True:
            filters = [] if bound is None else [at_least(Column.UPDATED, bound)]
            page = await self._query(Column.UPDATED, filters, size)
            if page is None:
                async for fallback_page in self._changes_from_full_listing(since, size):
                    yield fallback_page
                return
            rows = within(page.items, Column.UPDATED, bound, None)
            require_ascending(rows, Column.UPDATED)
            stamps = [row.updated_at for row in rows if row.updated_at is not None]
            full = len(page.items) >= size
            whole_group = full and bool(stamps) and stamps[0] == stamps[-1]
            if whole_group:
                rows = await self.instances_between(Column.UPDATED, stamps[0], stamps[0].shifted(1))
            fresh = [row for row in rows if _change_key(row) not in seen]
            seen.update(_change_key(row) for row in fresh)
            newest = stamps[-1] if stamps else None
            if newest is not None and (cursor is None or newest > cursor):
                cursor = newest
            yield ChangePage(tuple(fresh), cursor, server_filtered=True)
            if not full or newest is None:
                return
            # After a whole group every row stamped `newest` is read; otherwise the next
            # page starts at `newest` again, since more rows may share it.
            bound = newest.shifted(1) if whole_group else newest
            seen = {key for key in seen if key[1] is not None and key[1] >= bound.ticks}

    async def creation_page(
        self,
        after: ElsaTimestamp | None,
        until: ElsaTimestamp,
        *,
        page_size: int | None = None,
    ) -> CreationPage | None:
        """One page of instances created in [after, until], oldest first; None where the
        server has no instance query with timestamp filters (ELSA 3.0)."""
        size = self._page_size(page_size)
        end = until.shifted(1)
        filters = [below(Column.CREATED, end)]
        if after is not None:
            filters.append(at_least(Column.CREATED, after))
        page = await self._query(Column.CREATED, filters, size)
        if page is None:
            return None
        rows = within(page.items, Column.CREATED, after, end)
        require_ascending(rows, Column.CREATED)
        return CreationPage(rows, full=len(page.items) >= size)

    async def instances_between(
        self, column: Column, start: ElsaTimestamp, end: ElsaTimestamp
    ) -> list[InstanceSummary]:
        """Every instance whose `column` lies in [start, end), read as one group: the page
        is made as large as `totalCount` says the group is."""
        filters = [at_least(column, start), below(column, end)]
        size = self.page_size
        rows: list[InstanceSummary] = []
        for _ in range(GROUP_ATTEMPTS):
            page = await self._query(column, filters, size)
            if page is None:
                raise ElsaProtocolError(
                    "the instance query vanished", method="POST", path="/workflow-instances"
                )
            rows = within(page.items, column, start, end)
            if page.total_count is None or len(page.items) >= page.total_count:
                break
            size = page.total_count + self.page_size
        return rows

    async def instances_by_creation(self, page: int, size: int) -> InstancePage:
        """One page of `GET /workflow-instances` (every 3.x version has it), oldest first."""
        params = self._oldest_first(page, size)
        return await self._get("/workflow-instances", InstancePage, params=params)

    async def count_instances(self) -> int | None:
        """How many instances ELSA holds (its `totalCount`), for progress reporting."""
        return (await self.instances_by_creation(0, 1)).total_count

    # ── one instance ──────────────────────────────────────────────────────────────────

    async def get_instance(self, instance_id: str, *, once: bool = False) -> InstanceDetail:
        """The instance with its workflow state (bookmarks, incidents); ElsaNotFound if gone.
        `once`: a single attempt, for an instance whose details are known to fail."""
        return await self._http.call(
            "GET",
            f"/workflow-instances/{quote(instance_id, safe='')}",
            InstanceDetail,
            retry=_ONE_ATTEMPT if once else None,
        )

    async def get_instance_variables(
        self,
        instance_id: str,
        *,
        detail: InstanceDetail | None = None,
        definition: WorkflowDefinition | None = None,
    ) -> list[VariableValue]:
        """The root workflow's variables with their current values, as ELSA tells them.

        ELSA 3.3+ has `GET …/{id}/variables`; it answers an empty list for an instance
        with nothing to tell (pending, unknown). Older servers answer 404 there even for a
        live instance; then the values are read from the workflow state (the execution
        contexts' `properties`, keyed by variable id) and named through the definition's
        declarations: `definition` if given, else fetched (and kept) by the instance's
        definition version id. ElsaNotFound if the instance is gone.
        """
        path = f"/workflow-instances/{quote(instance_id, safe='')}/variables"
        if self._has_variables_endpoint is not False:
            try:
                result = await self._get(path, VariableList)
            except ElsaNotFound:
                if self._has_variables_endpoint:
                    raise
                # The instance is gone, or the route is: a fresh detail tells which.
                detail = await self.get_instance(instance_id)
                logger.info("ELSA has no instance variables route; reading workflow state")
                self._has_variables_endpoint = False
            else:
                self._has_variables_endpoint = True
                return result.items
        if detail is None:
            detail = await self.get_instance(instance_id)
        if definition is None and detail.definition_version_id is not None:
            definition = await self._declaring(detail.definition_version_id)
        return variables_from_state(detail, definition)

    async def get_journal(self, instance_id: str, page: int, page_size: int) -> JournalPage:
        """One zero-based page of the instance's execution journal, oldest event first. An
        instance ELSA does not know has an empty journal (ELSA answers 200 with no record)."""
        return await self._http.call(
            "GET",
            f"/workflow-instances/{quote(instance_id, safe='')}/journal",
            JournalPage,
            params=[("page", page), ("pageSize", page_size)],
            retry=_INTERACTIVE,
        )

    async def cancel_instance(self, instance_id: str) -> None:
        """Ask ELSA to cancel an instance (`POST /cancel/workflow-instances/{id}`, 3.1+).

        ELSA answers 200 whether or not there was anything to cancel and cancels in the
        background; read the instance to learn the outcome. ElsaNotFound means the server
        has no such route (3.0).
        """
        await self._http.command(
            "POST", f"/cancel/workflow-instances/{quote(instance_id, safe='')}"
        )

    async def _declaring(self, version_id: str) -> WorkflowDefinition | None:
        """The definition version that names an instance's variables (kept: they rarely change)."""
        if version_id in self._declarations:
            self._declarations.move_to_end(version_id)
            return self._declarations[version_id]
        try:
            definition: WorkflowDefinition | None = await self.get_definition(version_id)
        except ElsaNotFound:
            definition = None
        self._declarations[version_id] = definition
        if len(self._declarations) > DECLARATIONS_KEPT:
            self._declarations.popitem(last=False)
        return definition

    # ── helpers ───────────────────────────────────────────────────────────────────────

    def _page_size(self, page_size: int | None) -> int:
        if page_size is None:
            return self.page_size
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        return page_size

    def _oldest_first(self, page: int, size: int, **extra: str) -> Params:
        """A GET listing's page, by creation, without system workflows unless asked."""
        params: dict[str, str | int] = {
            **extra,
            "page": page,
            "pageSize": size,
            "orderBy": "Created",
            "orderDirection": "Ascending",
        }
        if not self.system_workflows:
            params["isSystem"] = "false"
        return list(params.items())

    async def _get(self, path: str, model: type[M], *, params: Params | None = None) -> M:
        return await self._http.call("GET", path, model, params=params)

    async def _query(
        self, column: Column, filters: list[dict[str, Any]], size: int
    ) -> InstancePage | None:
        """Page 0 of `POST /workflow-instances` ordered by `column`, ascending; None if the
        server lacks the POST query (3.0)."""
        if self._has_instance_query is False:
            return None
        body: dict[str, Any] = {
            "page": 0,
            "pageSize": size,
            "orderBy": "UpdatedAt" if column is Column.UPDATED else "Created",
            "orderDirection": "Ascending",
        }
        if filters:
            body["timestampFilters"] = filters
        if not self.system_workflows:
            body["isSystem"] = False
        try:
            result = await self._http.call("POST", "/workflow-instances", InstancePage, json=body)
        except (ElsaNotFound, ElsaProtocolError) as exc:
            if self._has_instance_query or exc.status not in _ROUTE_MISSING:
                raise
            logger.info("ELSA has no POST instance query (3.0); listings use GET pages")
            self._has_instance_query = False
            return None
        self._has_instance_query = True
        return result

    async def _changes_from_full_listing(
        self, since: ElsaTimestamp | None, size: int
    ) -> AsyncGenerator[ChangePage]:
        """ELSA 3.0: list everything by creation and keep rows updated at or after `since`.

        The cursor may only advance once the whole listing is read and was consistent, so
        every page but the last carries `since`; the last carries the newest `updatedAt`.
        """

        async def fetch(page: int) -> tuple[list[InstanceSummary], int | None]:
            result = await self.instances_by_creation(page, size)
            return result.items, result.total_count

        scan = PagedScan(fetch, key=lambda row: row.id, page_size=size)
        newest = since
        pending: list[InstanceSummary] | None = None
        async for rows in scan.pages():
            if pending is not None:
                yield ChangePage(tuple(pending), since, server_filtered=False)
            pending = within(rows, Column.UPDATED, since, None)
            for row in pending:
                if row.updated_at is not None and (newest is None or row.updated_at > newest):
                    newest = row.updated_at
        if scan.problems:
            logger.warning(
                "ELSA instance listing is inconsistent (source %s), cursor kept: %s",
                self.source_id,
                "; ".join(scan.problems),
            )
            newest = since
        yield ChangePage(tuple(pending or ()), newest, server_filtered=False)


def variables_from_state(
    detail: InstanceDetail, definition: WorkflowDefinition | None
) -> list[VariableValue]:
    """Pre-3.3 variables: values stored by variable id in the execution contexts (under
    either storage driver's key), named by the definition's declarations (undeclared ids
    belong to inner scopes and are skipped). A declared variable with no stored value has
    its declared default, as ELSA's VariablePersistenceManager loads it (a null value is
    deleted from the state, not stored). An instance with no execution context (pending,
    or ended on ELSA 3.1, which persists none then) has nothing to tell: empty."""
    declared = [
        (variable.id, variable.name, variable.value)
        for variable in ((definition.variables if definition else None) or [])
        if variable.id and variable.name
    ]
    state = detail.workflow_state
    if not declared or state is None or not state.activity_execution_contexts:
        return []
    ids = {variable_id for variable_id, _, _ in declared}
    contexts = sorted(
        state.activity_execution_contexts,
        key=lambda context: (context.call_stack_depth is None, context.call_stack_depth or 0),
    )
    stored: dict[str, Any] = {}
    for context in contexts:
        for key in VARIABLE_KEYS:
            values = (context.properties or {}).get(key)
            if isinstance(values, dict):
                for variable_id, value in values.items():
                    if variable_id in ids:
                        stored.setdefault(variable_id, value)
    return [
        VariableValue(id=variable_id, name=name, value=stored.get(variable_id, default))
        for variable_id, name, default in declared
    ]


def _change_key(row: InstanceSummary) -> tuple[str, int | None]:
    return row.id, row.updated_at.ticks if row.updated_at else None


def _secret(value: SecretStr | str | None) -> SecretStr | None:
    return SecretStr(value) if isinstance(value, str) else value


def _login(username: str | None, password: SecretStr | str | None) -> tuple[str, SecretStr] | None:
    secret = _secret(password)
    return (username, secret) if username is not None and secret is not None else None
