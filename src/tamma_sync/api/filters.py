"""Query-parameter filters shared by list endpoints and event streams."""

from __future__ import annotations

from tamma_sync.api.errors import ApiError
from tamma_sync.models import SubStatus, WorkflowStatus


def sub_status_filter(status: str | None, sub_status: str | None) -> list[SubStatus] | None:
    """The sub-statuses that `status` (Running/Finished) and `subStatus` (comma-separated
    sub-statuses) allow together, or None when neither is given. 400 on unknown values."""
    allowed: set[SubStatus] | None = None
    if status:
        coarse = {_parse_status(part) for part in _split(status)}
        allowed = {member for member in SubStatus if member.status in coarse}
    if sub_status:
        try:
            wanted = {SubStatus.parse(part) for part in _split(sub_status)}
        except ValueError as exc:
            raise ApiError(400, f"subStatus: {exc}") from exc
        allowed = wanted if allowed is None else allowed & wanted
    return None if allowed is None else sorted(allowed)


def _parse_status(text: str) -> WorkflowStatus:
    for member in WorkflowStatus:
        if member.value.lower() == text.lower():
            return member
    raise ApiError(400, f"status: unknown status {text!r}; expected Running or Finished")


def _split(values: str) -> list[str]:
    return [part.strip() for part in values.split(",") if part.strip()]
