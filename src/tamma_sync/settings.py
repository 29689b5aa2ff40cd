"""All settings in one place: environment variables prefixed `TAMMA_SYNC_`.

One `Settings` object is built at start-up and passed down; nothing else reads the
environment. `tamma-sync settings` prints every setting with its default.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_settings import BaseSettings, SettingsConfigDict

from tamma_sync.models import DEFAULT_TENANT_ID

SQLITE_FILE_NAME = "tamma-sync.db"
#: Bytes a second a request body must keep arriving at to be given more than
#: `request_timeout_seconds`: a large upload on a slow link passes, a trickle does not.
MIN_BODY_RATE = 16 * 1024
#: A day in milliseconds: retention and engine-event ages are set in days.
DAY_MS = 86_400_000


class DetailsPolicy(StrEnum):
    """Which changed ELSA instances get their details (current activity, variables)."""

    ALL = "all"
    ACTIVE = "active"
    """Only instances that have not ended; an ended one keeps the variables last seen."""
    NONE = "none"


def normalize_database_url(url: str) -> str:
    """Accept the plain forms users write and return the async-driver form SQLAlchemy needs.

    `sqlite:///x.db` → `sqlite+aiosqlite:///x.db`; `postgresql://…` and `postgres://…` →
    `postgresql+asyncpg://…`; the async forms pass through. Anything else is rejected.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:  # the URL is not repeated: it may hold a password
        raise ValueError("not a database URL: use sqlite:///path.db or postgresql://…")
    driver = {
        "sqlite": "sqlite+aiosqlite",
        "sqlite+aiosqlite": "sqlite+aiosqlite",
        "postgresql": "postgresql+asyncpg",
        "postgres": "postgresql+asyncpg",
        "postgresql+asyncpg": "postgresql+asyncpg",
    }.get(scheme.lower())
    if driver is None:
        raise ValueError(
            f"unsupported database URL scheme {scheme!r}: use sqlite:///path.db or "
            "postgresql://user@host:port/db"
        )
    return f"{driver}://{rest}"


def without_credentials(url: str) -> str:
    """The URL as shown in status, logs and errors: a `user:password@` part is dropped.

    Everything up to the last `@` goes, not urlsplit's user info: a password holding an
    unescaped `/`, `?` or `#` would pass for a path there, and be shown."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    return scheme + sep + rest.rpartition("@")[2]


def has_credentials(url: str) -> bool:
    """Whether `url` carries a `user:password@` part (any `@`, as `without_credentials`
    reads it), which httpx sends as Basic auth over any other Authorization. ValueError if
    its port cannot be read: an unescaped `/` in a password leaves the password's start
    where the port should be, and httpx would quote it."""
    try:
        _ = urlsplit(url).port  # raises for a port that is not a number
    except ValueError:
        raise ValueError(
            "its host or port cannot be read (percent-encode any / ? # in a password)"
        ) from None
    return without_credentials(url) != url


@dataclass(frozen=True)
class _CredentialNames:
    """How one source's credential settings are called where they are set."""

    url: str
    api_key: str
    username: str
    password: str


_SOURCE_NAMES = _CredentialNames("url", "apiKey", "username", "password")
_ENV_NAMES = _CredentialNames(
    "TAMMA_SYNC_ELSA_URL",
    "TAMMA_SYNC_ELSA_API_KEY",
    "TAMMA_SYNC_ELSA_USERNAME",
    "TAMMA_SYNC_ELSA_PASSWORD",
)


def _elsa_url_problem(url: str, name: str) -> str | None:
    """Why `url` cannot reach an ELSA server, or None: without a scheme and host (`elsa:5000`)
    httpx refuses every request, and the sync would retry forever. The value is not repeated:
    it may hold a password."""
    parts = urlsplit(url)
    if parts.scheme.lower() in ("http", "https") and parts.netloc:
        return None
    return f"{name} must be http:// or https:// and a host, e.g. http://elsa:5000"


def _studio_url_problem(url: str, name: str) -> str | None:
    """Why `url` cannot be a link to Elsa Studio, or None: a browser follows it."""
    parts = urlsplit(url)
    if parts.scheme.lower() in ("http", "https") and parts.netloc and not parts.password:
        return None
    return f"{name} must be http:// or https:// and a host, without credentials"


def _elsa_root(url: str, api_prefix: str) -> str:
    """ELSA's root URL, to which the client adds `api_prefix`: a URL that already ends in
    the prefix (as the simulator prints it, http://127.0.0.1:5080/elsa/api) loses it."""
    parts = urlsplit(url)
    path, prefix = parts.path.rstrip("/"), "/" + api_prefix.strip("/")
    if prefix == "/" or not path.endswith(prefix):
        return url
    return urlunsplit(parts._replace(path=path.removesuffix(prefix)))


def _credentials_problem(
    url: str,
    api_key: SecretStr | None,
    username: str | None,
    password: SecretStr | None,
    names: _CredentialNames,
) -> str | None:
    """Why these credentials cannot work, or None. Two kinds at once would each replace the
    other's Authorization header (every request 401), and a blank key sends `ApiKey `."""
    if (username is None) != (password is None):
        return f"{names.username} and {names.password} go together"
    if api_key is not None and username is not None:
        return f"give {names.api_key} or {names.username}, not both"
    if api_key is not None and not api_key.get_secret_value().strip():
        return f"{names.api_key} is empty: give the key, or leave it unset"
    try:
        in_url = has_credentials(url)
    except ValueError as exc:
        return f"{names.url} is not a valid URL: {exc}"
    if in_url and (api_key is not None or username is not None):
        other = names.api_key if api_key is not None else names.username
        return (
            f"{names.url} carries credentials (user:password@) and {other} is set: give one of them"
        )
    return None


class SourceSettings(BaseModel):
    """One ELSA server to mirror. In `TAMMA_SYNC_SOURCES` the keys are camelCase."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")
    url: str = Field(min_length=1)
    api_key: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    poll_interval: float = Field(default=2.0, gt=0)
    api_prefix: str = "/elsa/api"
    tenant_id: str = Field(default=DEFAULT_TENANT_ID, min_length=1, max_length=255)
    studio_url: str | None = Field(default=None, max_length=2000)
    """Elsa Studio for this ELSA: the instance page links each instance there."""

    @model_validator(mode="after")
    def _check_credentials(self) -> Self:
        problem = _elsa_url_problem(self.url, _SOURCE_NAMES.url) or _credentials_problem(
            self.url, self.api_key, self.username, self.password, _SOURCE_NAMES
        )
        if problem is None and self.studio_url is not None:
            problem = _studio_url_problem(self.studio_url, "studioUrl")
        if problem is not None:
            raise ValueError(f"source {self.id!r}: {problem}")
        self.url = _elsa_root(self.url, self.api_prefix)
        return self


class Settings(BaseSettings):
    """Every setting of tamma-sync. Environment: `TAMMA_SYNC_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="TAMMA_SYNC_", extra="ignore")

    data_dir: Path = Field(
        default=Path(".tamma-sync"), description="Where the embedded SQLite database lives."
    )
    database_url: str | None = Field(
        default=None,
        description="sqlite:///path.db or postgresql://user@host:port/db. "
        "Default: an SQLite file in the data directory.",
    )
    database_pool_size: int = Field(
        default=20,
        ge=1,
        le=1000,
        description="PostgreSQL connections a process keeps open (from two on, half of them, "
        "16 at most, are held for small reads and single-row writes); bursts may open half "
        "as many again. Budget it against max_connections across replicas. SQLite ignores "
        "it (two pooled connections per process, and two on the event loop's thread for "
        "small reads and single-row writes: more threads only fight over the GIL).",
    )
    migrate_on_start: bool = Field(
        default=True, description="Apply database migrations when the server starts."
    )
    sse_heartbeat_seconds: float = Field(
        default=15.0, gt=0, description="Interval of the `:heartbeat` comment on SSE streams."
    )
    sse_queue_size: int = Field(
        default=1000,
        ge=1,
        description="Changes buffered per SSE subscriber; one that falls further behind is "
        "disconnected and resumes from its last event id.",
    )
    feed_poll_interval: float = Field(
        default=1.0,
        gt=0,
        description="Seconds between reads of the change log when no notification arrives "
        "(changes written by other processes on SQLite are seen this way).",
    )

    max_body_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Largest request body accepted (bytes); larger ones get 413.",
    )
    request_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a client has to send a request's head, and its body (one "
        f"second more per {MIN_BODY_RATE // 1024} KiB received); a slower client gets 408 "
        "and its connection is closed. Responses, such as SSE streams, are not limited.",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed to call the API from a browser, as JSON (e.g. "
        '["https://dash.example"]). Empty: CORS off.',
    )
    auth_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How long a verified API key is trusted without asking the database "
        "(a revoked key stops working within this time).",
    )
    engine_events_keep: int = Field(
        default=1000, ge=1, description="Events kept per engine (the newest)."
    )
    engine_events_max_age_days: float = Field(
        default=30.0, gt=0, description="Engine events older than this are dropped."
    )

    retention_interval: float = Field(
        default=3600.0, gt=0, description="Seconds between retention purges."
    )
    retention_tombstones_days: float = Field(
        default=7.0, gt=0, description="Deleted definitions and instances are kept this long."
    )
    retention_changes_days: float = Field(
        default=7.0,
        gt=0,
        description="Change-log rows are kept this long: the window in which a live stream "
        "can resume from its last event id, and how far back an instance's history reaches.",
    )
    retention_ended_instances_days: float | None = Field(
        default=None,
        gt=0,
        description="If set, ended instances (Finished, Cancelled, Faulted) are purged this "
        "long after they finished, and the sync does not mirror them again (a sync pushing to "
        "a server follows the server's setting). Off by default.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="Log lines as text, or as one JSON object per line."
    )
    access_log: bool = Field(
        default=True,
        description="Log a line per HTTP request (to stdout, or with the JSON logs). Off "
        "where a proxy in front logs requests: writing it costs 5-10 % of the server's CPU "
        "per request.",
    )
    public_source_detail: bool = Field(
        default=False,
        description="Show every ELSA source's id and figures on /metrics and /readyz to "
        "callers without an API key, e.g. a Prometheus scraper on a private network. Off: "
        "once API keys are in use, those answers name a source only to a key of its tenant "
        "with dashboard:view.",
    )

    elsa_url: str | None = Field(
        default=None,
        description="URL of the one ELSA server, e.g. http://elsa:5000 (its API is read under "
        "TAMMA_SYNC_ELSA_API_PREFIX; a URL ending in it, such as http://elsa:5000/elsa/api, "
        "is read the same).",
    )
    elsa_api_key: SecretStr | None = Field(default=None, description="ELSA API key.")
    elsa_username: str | None = Field(default=None, description="ELSA login user.")
    elsa_password: SecretStr | None = Field(default=None, description="ELSA login password.")
    elsa_api_prefix: str = Field(default="/elsa/api", description="ELSA's API route prefix.")
    elsa_studio_url: str | None = Field(
        default=None,
        max_length=2000,
        description="Elsa Studio's URL for that ELSA server, e.g. http://studio:8080: the "
        "instance page links each of its instances there (a source in TAMMA_SYNC_SOURCES "
        'sets "studioUrl").',
    )
    poll_interval: float = Field(
        default=2.0, gt=0, description="Seconds between sync cycles of the one ELSA source."
    )
    sync_page_size: int = Field(
        default=1000,
        ge=1,
        le=5000,
        description="Instances per ELSA list request. A stored batch holds a page, or the "
        "pages read while the write before it ran (5,000 instances at most).",
    )
    sync_details: DetailsPolicy = Field(
        default=DetailsPolicy.ACTIVE,
        description="Which changed instances get details (current activity, variables): "
        "all, active (not ended), none.",
    )
    sync_details_concurrency: int = Field(
        default=8, ge=1, le=64, description="Detail requests in flight per source."
    )
    details_max_age: float = Field(
        default=120.0,
        ge=0,
        description="Seconds after which a running instance's details (current activity, "
        "variables) are read again although ELSA shows no change: ELSA commits those "
        "without moving updatedAt. Costs running instances / this many detail reads per "
        "second (two requests each on ELSA 3.3+). 0 turns the refresh off.",
    )
    lookback: float = Field(
        default=10.0,
        ge=0,
        description="Seconds of updatedAt behind the cursor that each cycle reads again: "
        "ELSA stamps a change before it commits it, so a row can appear after newer ones "
        "were read. Re-read rows that did not change cost nothing more.",
    )
    reconcile_interval: float = Field(
        default=5.0,
        ge=0,
        description="Least seconds between the starts of two deletion sweeps (each lists "
        "ELSA's ids and confirms every missing one before it is deleted).",
    )
    reconcile_share: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="Largest share of the time the deletion sweep may keep ELSA busy; a "
        "large ELSA is swept over several cycles.",
    )
    include_system_workflows: bool = Field(
        default=False,
        description="Mirror ELSA's system workflows too (left out by default, as Elsa "
        "Studio does; ELSA 3.0 cannot tell them apart).",
    )
    sources: list[SourceSettings] = Field(
        default_factory=list,
        validation_alias=AliasChoices("TAMMA_SYNC_SOURCES", "sources"),
        description='Several ELSA sources as JSON: [{"id","url","apiKey"|"username"+"password",'
        '"pollInterval","tenantId","studioUrl"}]. A source without "tenantId", like the one of '
        f"TAMMA_SYNC_ELSA_URL, syncs into tenant `{DEFAULT_TENANT_ID}`.",
    )

    @property
    def keep_ended_instances_ms(self) -> int | None:
        """How long after it finished retention keeps an ended instance, in ms (None: for
        ever)."""
        days = self.retention_ended_instances_days
        return None if days is None else round(days * DAY_MS)

    @property
    def resolved_database_url(self) -> str:
        """The async SQLAlchemy URL to open, defaulting to SQLite in the data directory."""
        if self.database_url:
            return normalize_database_url(self.database_url)
        return f"sqlite+aiosqlite:///{(self.data_dir / SQLITE_FILE_NAME).as_posix()}"

    def elsa_sources(self) -> list[SourceSettings]:
        """Every configured ELSA source: `TAMMA_SYNC_SOURCES` plus the one from `ELSA_URL`."""
        sources = list(self.sources)
        if self.elsa_url:
            sources.insert(
                0,
                SourceSettings(
                    id="elsa",
                    url=self.elsa_url,
                    api_key=self.elsa_api_key,
                    username=self.elsa_username,
                    password=self.elsa_password,
                    poll_interval=self.poll_interval,
                    api_prefix=self.elsa_api_prefix,
                    studio_url=self.elsa_studio_url,
                ),
            )
        return sources

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, url: str | None) -> str | None:
        if url:
            normalize_database_url(url)
        return url

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.elsa_url:  # checked here, to name the environment variables
            problem = _elsa_url_problem(self.elsa_url, _ENV_NAMES.url) or _credentials_problem(
                self.elsa_url,
                self.elsa_api_key,
                self.elsa_username,
                self.elsa_password,
                _ENV_NAMES,
            )
            if problem is not None:
                raise ValueError(problem)
        if self.elsa_studio_url:
            problem = _studio_url_problem(self.elsa_studio_url, "TAMMA_SYNC_ELSA_STUDIO_URL")
            if problem is not None:
                raise ValueError(problem)
        ids = [source.id for source in self.elsa_sources()]
        duplicates = {source_id for source_id in ids if ids.count(source_id) > 1}
        if duplicates:
            raise ValueError(f"duplicate ELSA source ids: {sorted(duplicates)}")
        return self


def describe_settings_error(exc: ValidationError) -> str:
    """Why the settings are refused, in one line naming each setting; never the values given
    (pydantic's own text repeats them: passwords, keys, database URLs)."""
    problems = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        message = error["msg"].removeprefix("Value error, ")
        if not error["loc"]:
            problems.append(message)
            continue
        first, *rest = (str(part) for part in error["loc"])
        name = first if first.startswith("TAMMA_SYNC_") else f"TAMMA_SYNC_{first.upper()}"
        problems.append(f"{'.'.join([name, *rest])}: {message}")
    return "; ".join(problems)


def settings_table() -> str:
    """Every setting as a Markdown table (environment variable, default, meaning), made from
    the model itself so the documentation cannot drift from the code."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = "—" if default is None else f"`{_plain(default)}`"
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(f"| `TAMMA_SYNC_{name.upper()}` | {shown} | {meaning} |")
    return "\n".join(rows) + "\n"


def _plain(value: object) -> str:
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, list):
        return "[]" if not value else str(value)
    return str(value)
