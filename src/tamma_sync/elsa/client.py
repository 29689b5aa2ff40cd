"""Async client for the parts of the ELSA 3 REST API a mirror reads.

Everything here is a read (`POST /workflow-instances` is a query with a JSON body), so
every call is retried on connection errors, timeouts, 5xx, 429 and malformed 200 bodies,
with jittered exponential backoff bounded in attempts and total time. Other 4xx are never
retried. Pages are zero-based and `pageSize` is always sent: ELSA returns the whole table
when it is missing, and `page=1` skips the first page (the old .NET client's bug).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Hashable,
    Iterable,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from types import TracebackType
from typing import Any, Final, Generic, Self, TypeVar
from urllib.parse import quote

import httpx
import stamina
from pydantic import BaseModel, SecretStr, ValidationError

from tamma_sync.elsa.auth import Token
from tamma_sync.elsa.connections import Connections
from tamma_sync.elsa.errors import (
    ElsaAuthError,
    ElsaNotFound,
    ElsaProtocolError,
    ElsaUnavailable,
)
from tamma_sync.elsa.timestamps import ElsaTimestamp
from tamma_sync.elsa.wire import (
    DefinitionList,
    DefinitionPage,
    DefinitionSummary,
    InstanceDetail,
    InstancePage,
    InstanceSummary,
    LoginResponse,
    PackageVersion,
    VariableList,
    VariableValue,
    WorkflowDefinition,
)
from tamma_sync.settings import SourceSettings

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
Body = dict[str, Any] | None

DEFAULT_PAGE_SIZE: Final = 100
#: Version ids per `many-by-id` request: keeps the query string well under URL limits.
DEFINITION_CHUNK_SIZE: Final = 50
_ROUTE_MISSING: Final = frozenset({404, 405})


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds to wait for a connection, and for each read/write on it."""

    connect: float = 5.0
    read: float = 30.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounds on retrying one read: attempts in all, and seconds after which none starts."""

    attempts: int = 5
    total_seconds: float = 30.0
    wait_initial: float = 0.2
    wait_max: float = 5.0
    wait_jitter: float = 0.5


@dataclass(frozen=True, slots=True)
class Listing(Generic[T]):
    """A full paged listing, and whether it can be trusted as complete.

    `problems` names every sign that the pages were not one consistent snapshot
    (totalCount changing, a short page before totalCount was reached, rows repeated across
    pages, a missing totalCount). A caller must not delete anything based on a listing
    that is not `complete`.
    """

    items: tuple[T, ...]
    total_count: int | None
    problems: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class ChangePage:
    """One page of instances changed since a cursor.

    `cursor` is safe to persist once `items` are stored: every instance updated before it
    has been delivered. `items` are deduplicated on (id, updatedAt) within one walk; the
    cursor is inclusive, so the next walk re-reads rows stamped exactly at the cursor.
    `server_filtered` is False on ELSA 3.0, where the walk is a full listing filtered here.
    """

    items: tuple[InstanceSummary, ...]
    cursor: ElsaTimestamp | None
    server_filtered: bool


def filter_timestamp(cursor: ElsaTimestamp) -> str:
    """The text to send as a `timestampFilters` bound for `cursor`.

    ELSA treats a filter timestamp whose time of day is exactly 00:00:00.0000000 as a whole
    calendar day (in the server's local offset): `GreaterThanOrEqual` midnight would still
    work but `GreaterThan`/`LessThanOrEqual` jump to the end of the day, and which branch
    applies differs between versions. So midnight is never sent. The bound moves one tick
    *earlier*, not later: with `>=`, an earlier bound can only add rows stamped in that
    single 100-ns tick (deduplicated downstream on (id, updatedAt)), while a later bound
    would silently drop the rows stamped exactly at midnight.
    """
    return (cursor.shifted(-1) if cursor.is_midnight else cursor).to_iso()


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None if absent or junk."""
    if value is None:
        return None
    text = value.strip()
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.fromtimestamp(now, UTC)).total_seconds(), 0.0)


@dataclass
class _PagedScan(Generic[T]):
    """Walks a zero-based, totalCount-reporting listing and notes where it was inconsistent."""

    fetch: Callable[[int], Awaitable[tuple[Sequence[T], int | None]]]
    key: Callable[[T], Hashable]
    page_size: int
    problems: list[str] = field(default_factory=list)
    total_count: int | None = None

    async def pages(self) -> AsyncIterator[list[T]]:
        """Yield each page's rows not seen on an earlier page, until a short page."""
        seen: set[Hashable] = set()
        first_total: int | None = None
        page = 0
        while True:
            rows, total = await self.fetch(page)
            self._check_total(page, total, first_total)
            if first_total is None:
                first_total = total
            self.total_count = total if total is not None else self.total_count
            fresh = []
            for row in rows:
                row_key = self.key(row)
                if row_key not in seen:
                    seen.add(row_key)
                    fresh.append(row)
            if len(fresh) < len(rows):
                self.problems.append(
                    f"page {page} repeated {len(rows) - len(fresh)} row(s) of earlier pages"
                )
            yield fresh
            if len(rows) > self.page_size:
                self.problems.append(
                    f"page {page} had {len(rows)} rows, more than pageSize {self.page_size}"
                )
                break
            if len(rows) < self.page_size or not fresh:
                break
            page += 1
        if self.total_count is not None and len(seen) != self.total_count:
            self.problems.append(
                f"listing ended at page {page} with {len(seen)} rows, "
                f"totalCount says {self.total_count}"
            )

    def _check_total(self, page: int, total: int | None, first_total: int | None) -> None:
        if total is None:
            self.problems.append(f"page {page} had no totalCount")
        elif first_total is not None and total != first_total:
            self.problems.append(f"totalCount changed from {first_total} to {total} at page {page}")


class ElsaClient:
    """One ELSA 3 server: authentication, retries, paging, and the reads the mirror needs.

    Use as `async with ElsaClient(...) as elsa:` (or call `aclose()`). Credentials are
    either an API key (`Authorization: ApiKey …`) or a username and password exchanged at
    `/identity/login` for a bearer token, renewed before its `exp` and re-obtained once
    after a 401. Neither ever appears in a log line or an error message.
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
    ) -> None:
        if api_key is not None and username is not None:
            raise ValueError("give an api_key or a username and password, not both")
        if (username is None) != (password is None):
            raise ValueError("username and password go together")
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.source_id = source_id
        self.page_size = page_size
        self._api_key = _secret(api_key)
        self._login = (
            (username, SecretStr(password) if isinstance(password, str) else password)
            if username is not None and password is not None
            else None
        )
        self._retry = retry or RetryPolicy()
        timeouts = timeouts or Timeouts()
        prefix = api_prefix.strip("/")
        tls = httpx.create_ssl_context()  # one for every connection: each costs ~40 ms
        self._connections = Connections(
            lambda: httpx.AsyncClient(
                base_url=base_url.rstrip("/") + (f"/{prefix}" if prefix else ""),
                timeout=httpx.Timeout(
                    connect=timeouts.connect,
                    read=timeouts.read,
                    write=timeouts.read,
                    pool=timeouts.connect,
                ),
                headers={"Accept": "application/json"},
                follow_redirects=False,
                verify=tls,
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            )
        )
        self._access: Token | None = None
        self._refresh: Token | None = None
        self._auth_lock = asyncio.Lock()
        # Feature detection, learned once per client: None until the server has answered.
        self._has_instance_query: bool | None = None  # POST /workflow-instances (3.1+)
        self._has_many_by_id: bool | None = None
        self._has_variables_endpoint: bool | None = None  # GET …/{id}/variables (3.3+)

    @classmethod
    def from_settings(
        cls,
        source: SourceSettings,
        *,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
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
        await self._connections.aclose()

    # ── reads ─────────────────────────────────────────────────────────────────────────

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
            params = httpx.QueryParams(
                versionOptions="Latest",
                page=page,
                pageSize=size,
                orderBy="Created",
                orderDirection="Ascending",
            )
            result = await self._get("/workflow-definitions", DefinitionPage, params=params)
            return result.items, result.total_count

        scan = _PagedScan(fetch, key=lambda row: row.definition_id, page_size=size)
        return await self._collect(scan, "latest definitions")

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
                        params=httpx.QueryParams([("ids", version_id) for version_id in chunk]),
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

    async def iter_instance_changes(
        self, since: ElsaTimestamp | None, *, page_size: int | None = None
    ) -> AsyncGenerator[ChangePage]:
        """Instances whose `updatedAt` is at or after `since` (all of them when None).

        Keyset walk: `UpdatedAt >= bound` ordered by UpdatedAt ascending, page 0, and the
        bound moves to the newest `updatedAt` of each full page. Offset paging under a
        moving filter would skip rows that get updated while we read; keyset never does.
        When a whole page shares one timestamp the walk pages by offset within it. On
        ELSA 3.0 (no POST listing) it falls back to a full listing filtered here.
        """
        size = self._page_size(page_size)
        bound = since
        cursor = since
        page_index = 0
        seen: set[tuple[str, int | None]] = set()
        while True:
            page = await self._query_instances(bound, page_index, size)
            if page is None:
                async for fallback_page in self._changes_from_full_listing(since, size):
                    yield fallback_page
                return
            _require_ascending_updates(page.items)
            fresh = [row for row in page.items if _change_key(row) not in seen]
            seen.update(_change_key(row) for row in fresh)
            newest = max((row.updated_at for row in page.items if row.updated_at), default=None)
            if newest is not None and (cursor is None or newest > cursor):
                cursor = newest
            yield ChangePage(tuple(fresh), cursor, server_filtered=True)
            if len(page.items) < size:
                return
            if newest is not None and (bound is None or newest > bound):
                bound, page_index = newest, 0
                seen = {key for key in seen if key[1] is not None and key[1] >= newest.ticks}
            else:
                page_index += 1

    async def list_instance_ids(self, *, page_size: int | None = None) -> Listing[str]:
        """Every instance id, for reconciliation; see `Listing.complete` before deleting."""
        size = self._page_size(page_size)

        async def fetch(page: int) -> tuple[list[str], int | None]:
            result = await self._list_instances_by_creation(page, size)
            return [row.id for row in result.items], result.total_count

        scan = _PagedScan(fetch, key=lambda row_id: row_id, page_size=size)
        return await self._collect(scan, "instance ids")

    async def count_instances(self) -> int | None:
        """How many instances ELSA holds (its `totalCount`), for progress reporting."""
        return (await self._list_instances_by_creation(0, 1)).total_count

    async def get_instance(self, instance_id: str) -> InstanceDetail:
        """The instance with its workflow state (bookmarks, incidents); ElsaNotFound if gone."""
        return await self._get(f"/workflow-instances/{quote(instance_id, safe='')}", InstanceDetail)

    async def get_instance_variables(
        self,
        instance_id: str,
        *,
        detail: InstanceDetail | None = None,
        definition: WorkflowDefinition | None = None,
    ) -> list[VariableValue]:
        """The root workflow's variables with their current values.

        ELSA 3.3+ has `GET …/{id}/variables`. Older servers answer 404 there even for a
        live instance; then the values are read from the workflow state
        (`activityExecutionContexts[*].properties.Variables`, keyed by variable id) and
        named through the definition's declarations: `definition` if given, else fetched
        by the instance's definition version id. Without declarations there are no names,
        so the result is empty. ElsaNotFound if the instance is gone.
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
            try:
                definition = await self.get_definition(detail.definition_version_id)
            except ElsaNotFound:
                definition = None
        return variables_from_state(detail, definition)

    # ── listing helpers ───────────────────────────────────────────────────────────────

    def _page_size(self, page_size: int | None) -> int:
        if page_size is None:
            return self.page_size
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        return page_size

    async def _collect(self, scan: _PagedScan[T], what: str) -> Listing[T]:
        items: list[T] = []
        async for rows in scan.pages():
            items.extend(rows)
        if scan.problems:
            logger.warning(
                "ELSA %s listing is inconsistent (source %s): %s",
                what,
                self.source_id,
                "; ".join(scan.problems),
            )
        return Listing(tuple(items), scan.total_count, tuple(scan.problems))

    async def _query_instances(
        self, bound: ElsaTimestamp | None, page: int, size: int
    ) -> InstancePage | None:
        """One page of `POST /workflow-instances` by UpdatedAt; None if the server lacks it."""
        if self._has_instance_query is False:
            return None
        body: dict[str, Any] = {
            "page": page,
            "pageSize": size,
            "orderBy": "UpdatedAt",
            "orderDirection": "Ascending",
        }
        if bound is not None:
            body["timestampFilters"] = [
                {
                    "column": "UpdatedAt",
                    "operator": "GreaterThanOrEqual",
                    "timestamp": filter_timestamp(bound),
                }
            ]
        try:
            result = await self._call("POST", "/workflow-instances", InstancePage, json=body)
        except (ElsaNotFound, ElsaProtocolError) as exc:
            if self._has_instance_query or exc.status not in _ROUTE_MISSING:
                raise
            logger.info("ELSA has no POST instance query (3.0); delta sync uses full listings")
            self._has_instance_query = False
            return None
        self._has_instance_query = True
        return result

    async def _list_instances_by_creation(self, page: int, size: int) -> InstancePage:
        """One page of `GET /workflow-instances` (every 3.x version has it), oldest first."""
        params = httpx.QueryParams(
            page=page, pageSize=size, orderBy="Created", orderDirection="Ascending"
        )
        return await self._get("/workflow-instances", InstancePage, params=params)

    async def _changes_from_full_listing(
        self, since: ElsaTimestamp | None, size: int
    ) -> AsyncGenerator[ChangePage]:
        """ELSA 3.0: list everything by creation and keep rows updated at or after `since`.

        The cursor may only advance once the whole listing is read and was consistent, so
        every page but the last carries `since`; the last carries the newest `updatedAt`.
        """

        async def fetch(page: int) -> tuple[list[InstanceSummary], int | None]:
            result = await self._list_instances_by_creation(page, size)
            return result.items, result.total_count

        scan = _PagedScan(fetch, key=lambda row: row.id, page_size=size)
        newest = since
        pending: list[InstanceSummary] | None = None
        async for rows in scan.pages():
            if pending is not None:
                yield ChangePage(tuple(pending), since, server_filtered=False)
            pending = [row for row in rows if _changed_since(row, since)]
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

    # ── transport ─────────────────────────────────────────────────────────────────────

    async def _get(
        self, path: str, model: type[M], *, params: httpx.QueryParams | None = None
    ) -> M:
        return await self._call("GET", path, model, params=params)

    async def _call(
        self,
        method: str,
        path: str,
        model: type[M],
        *,
        params: httpx.QueryParams | None = None,
        json: Body = None,
    ) -> M:
        """Send with the current credentials; after a 401, log in afresh and try once more."""
        authorization = await self._authorization()
        try:
            return await self._send(method, path, model, params, json, authorization)
        except ElsaAuthError as exc:
            if exc.status != 401 or self._login is None:
                raise
            await self._discard_token(authorization)
            authorization = await self._authorization()
            try:
                return await self._send(method, path, model, params, json, authorization)
            except ElsaAuthError as again:
                if again.status != 401:
                    raise
                raise ElsaAuthError(
                    "still unauthorized after a fresh login", method=method, path=path, status=401
                ) from again

    async def _send(
        self,
        method: str,
        path: str,
        model: type[M],
        params: httpx.QueryParams | None,
        json: Body,
        authorization: str | None,
    ) -> M:
        """One logical request, retried within the policy's bounds."""
        policy = self._retry
        deadline = time.monotonic() + policy.total_seconds
        attempt = 0

        def should_retry(exc: Exception) -> bool | float:
            if isinstance(exc, ElsaUnavailable):
                if exc.retry_after is None:
                    return True
                # Respect Retry-After; if it lies beyond our budget, give up now.
                return exc.retry_after if time.monotonic() + exc.retry_after < deadline else False
            return isinstance(exc, ElsaProtocolError) and exc.status == 200

        # No arguments: stamina logs a retried callable's arguments, and these carry secrets.
        async def once() -> M:
            nonlocal attempt
            attempt += 1
            return await self._send_once(method, path, model, params, json, authorization, attempt)

        caller = stamina.AsyncRetryingCaller(
            attempts=policy.attempts,
            timeout=policy.total_seconds,
            wait_initial=policy.wait_initial,
            wait_max=policy.wait_max,
            wait_jitter=policy.wait_jitter,
        )
        return await caller(should_retry, once)

    async def _send_once(
        self,
        method: str,
        path: str,
        model: type[M],
        params: httpx.QueryParams | None,
        json: Body,
        authorization: str | None,
        attempt: int,
    ) -> M:
        headers = {"Authorization": authorization} if authorization else None
        started = time.monotonic()
        try:
            async with self._connections.lease() as http:
                response = await http.request(
                    method, path, params=params, json=json, headers=headers
                )
        except httpx.TimeoutException as exc:
            raise ElsaUnavailable(
                f"timed out ({type(exc).__name__}, attempt {attempt})", method=method, path=path
            ) from exc
        except httpx.TransportError as exc:
            raise ElsaUnavailable(
                f"connection failed ({type(exc).__name__}: {exc}, attempt {attempt})",
                method=method,
                path=path,
            ) from exc
        status = response.status_code
        logger.debug(
            "ELSA %s %s -> %d in %.0f ms (source %s, attempt %d)",
            method,
            path,
            status,
            (time.monotonic() - started) * 1000,
            self.source_id,
            attempt,
        )
        if status == 429 or status >= 500:
            raise ElsaUnavailable(
                f"server unavailable (attempt {attempt})",
                method=method,
                path=path,
                status=status,
                retry_after=parse_retry_after(response.headers.get("Retry-After"), time.time()),
            )
        if status == 401:
            raise ElsaAuthError(
                "unauthorized: credentials missing or rejected",
                method=method,
                path=path,
                status=status,
            )
        if status == 403:
            raise ElsaAuthError(
                "forbidden: the credentials lack a permission",
                method=method,
                path=path,
                status=status,
            )
        if status == 404:
            raise ElsaNotFound("not found", method=method, path=path, status=status)
        if status != 200:
            raise ElsaProtocolError(
                f"unexpected status: {response.text[:200]!r}",
                method=method,
                path=path,
                status=status,
            )
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise ElsaProtocolError(
                f"unexpected body ({_describe(exc)}; content-type "
                f"{response.headers.get('Content-Type')!r}, attempt {attempt})",
                method=method,
                path=path,
                status=status,
            ) from None

    # ── authentication ────────────────────────────────────────────────────────────────

    async def _authorization(self) -> str | None:
        """The Authorization header value, logging in or refreshing first if needed."""
        if self._api_key is not None:
            return f"ApiKey {self._api_key.get_secret_value()}"
        if self._login is None:
            return None
        async with self._auth_lock:
            if self._access is None or not self._access.is_fresh(time.time()):
                await self._renew_tokens()
            assert self._access is not None
            return f"Bearer {self._access.value}"

    async def _discard_token(self, rejected: str | None) -> None:
        """Forget a token the server rejected (unless another task already replaced it)."""
        async with self._auth_lock:
            if self._access is not None and f"Bearer {self._access.value}" == rejected:
                self._access = None
                self._refresh = None

    async def _renew_tokens(self) -> None:
        """Refresh with the refresh token while it is fresh; else (or if refused) log in."""
        if self._refresh is not None and self._refresh.is_fresh(time.time()):
            try:
                refreshed = await self._send(
                    "POST",
                    "/identity/refresh-token",
                    LoginResponse,
                    None,
                    None,
                    f"Bearer {self._refresh.value}",
                )
            except (ElsaAuthError, ElsaNotFound, ElsaProtocolError) as exc:
                logger.info("ELSA token refresh failed, logging in again: %s", exc)
            else:
                if self._keep_tokens(refreshed):
                    return
        # Login and refresh change nothing on the server, so they are retried like reads.
        assert self._login is not None
        username, password = self._login
        body = {"username": username, "password": password.get_secret_value()}
        response = await self._send("POST", "/identity/login", LoginResponse, None, body, None)
        if not self._keep_tokens(response):
            raise ElsaAuthError(
                "the server refused the login", method="POST", path="/identity/login"
            )
        logger.info("logged in to ELSA (source %s)", self.source_id)

    def _keep_tokens(self, response: LoginResponse) -> bool:
        if not response.is_authenticated or not response.access_token:
            return False
        now = time.time()
        self._access = Token.issued(response.access_token, now)
        if response.refresh_token:
            self._refresh = Token.issued(response.refresh_token, now)
        return True


def variables_from_state(
    detail: InstanceDetail, definition: WorkflowDefinition | None
) -> list[VariableValue]:
    """Pre-3.3 variables: values stored by variable id in the execution contexts, named by
    the definition's declarations (undeclared ids belong to inner scopes and are skipped)."""
    declarations = (definition.variables if definition else None) or []
    names = {
        declared.id: declared.name for declared in declarations if declared.id and declared.name
    }
    state = detail.workflow_state
    if not names or state is None:
        return []
    contexts = sorted(
        state.activity_execution_contexts,
        key=lambda context: (context.call_stack_depth is None, context.call_stack_depth or 0),
    )
    found: dict[str, VariableValue] = {}
    for context in contexts:
        stored = (context.properties or {}).get("Variables")
        if not isinstance(stored, dict):
            continue
        for variable_id, value in stored.items():
            if variable_id in names and variable_id not in found:
                found[variable_id] = VariableValue(
                    id=variable_id, name=names[variable_id], value=value
                )
    return list(found.values())


def _require_ascending_updates(rows: Sequence[InstanceSummary]) -> None:
    """A keyset walk over a server that ignored the requested order would skip rows silently."""
    stamps = [row.updated_at for row in rows if row.updated_at is not None]
    if any(later < earlier for earlier, later in pairwise(stamps)):
        raise ElsaProtocolError(
            "rows are not in ascending updatedAt order: the server ignored orderBy/orderDirection",
            method="POST",
            path="/workflow-instances",
            status=200,
        )


def _change_key(row: InstanceSummary) -> tuple[str, int | None]:
    return row.id, row.updated_at.ticks if row.updated_at else None


def _changed_since(row: InstanceSummary, since: ElsaTimestamp | None) -> bool:
    """Rows without `updatedAt` are kept: better a redundant write than a missed change."""
    return since is None or row.updated_at is None or row.updated_at >= since


def _secret(value: SecretStr | str | None) -> SecretStr | None:
    return SecretStr(value) if isinstance(value, str) else value


def _describe(exc: ValidationError) -> str:
    """Where the body was wrong, without echoing any of it (it may hold tokens)."""
    first = exc.errors(include_input=False, include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return f"{exc.error_count()} error(s), first at {where}: {first['msg']}"
