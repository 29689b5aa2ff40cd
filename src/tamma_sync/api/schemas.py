"""Request and response bodies of the HTTP API (the queries live in the store).

Request bodies are the domain's write models made strict: wrong JSON types are rejected
instead of coerced, unknown keys are ignored (the original API stripped them), and a
`null` counts as "not sent".
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from tamma_sync.models import (
    MAX_ID_LENGTH,
    DefinitionWrite,
    Instance,
    InstancePatch,
    InstanceWrite,
    WireModel,
)

_STRICT = ConfigDict(strict=True, extra="ignore")


class DefinitionIn(DefinitionWrite):
    """`POST /api/workflows/definitions`: `id` and `name` required, the rest optional.

    A client-sent `syncedAt` is ignored: the server sets it.
    """

    model_config = _STRICT
    name: Annotated[str, StringConstraints(min_length=1)]


class InstanceIn(InstanceWrite):
    """`POST /api/workflows/instances`: `definitionId` required; an empty or missing `id`
    gets a UUID; `createdAt`/`updatedAt` are kept when sent (sync writers send ELSA's)."""

    model_config = _STRICT
    id: Annotated[str, StringConstraints(max_length=MAX_ID_LENGTH)] = ""


class InstancePatchIn(InstancePatch):
    """`PUT /api/workflows/instances/{id}`: only `status`, `subStatus`, `currentActivity`,
    `variables` (replaced, not merged), `updatedAt` and `finishedAt` are applied; `id`,
    `definitionId` and the tenant never change."""

    model_config = _STRICT


class InstanceList(BaseModel):
    """A page of instances: the original `{data, total, page, pageSize}` plus `nextCursor`."""

    data: list[Instance]
    total: int | None = Field(default=None, description="Omitted when includeTotal=false.")
    page: int
    page_size: int = Field(alias="pageSize")
    next_cursor: str | None = Field(
        default=None,
        alias="nextCursor",
        description="Pass as `cursor` to get the next page; absent on the last page.",
    )


class CancelledInstance(Instance):
    message: str | None = Field(
        default=None, description='"Instance already cancelled" when nothing was changed.'
    )


class Ok(BaseModel):
    ok: bool = True


class ErrorBody(BaseModel):
    error: str


class Readiness(WireModel):
    status: str
    database: str
    schema_revision: str | None = None
    expected_schema_revision: str | None = None
    error: str | None = None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Invalid input"},
    503: {"model": ErrorBody, "description": "Database unavailable"},
}
