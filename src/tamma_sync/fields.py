"""Text field types that carry their column's limits, so that both databases refuse the
same input before it reaches either: no NUL (PostgreSQL's text cannot hold one), no text
longer than its column, no '/' in an id."""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import AfterValidator, StringConstraints
from pydantic_core import PydanticCustomError

#: Longest identifier accepted (ids, definition ids, tenant ids, correlation ids).
MAX_ID_LENGTH: Final = 255
#: The narrower text columns: a source id, and what an engine says of its kind and state.
MAX_SOURCE_ID_LENGTH: Final = 100
MAX_ENGINE_KIND_LENGTH: Final = 50
MAX_ENGINE_LABEL_LENGTH: Final = 100
#: Longest current activity: it is a key of PostgreSQL's running-by-activity index, whose
#: entries hold at most 2,704 bytes; 500 characters of up to 4 bytes each always fit, so
#: both databases accept the same.
MAX_ACTIVITY_LENGTH: Final = 500


def _storable(value: str) -> str:
    if "\x00" in value:
        raise PydanticCustomError("nul_character", "the NUL character (\\u0000) is not allowed")
    return value


def _path_safe(value: str) -> str:
    """An id must fit in one URL path segment, or it could never be read or deleted."""
    if "/" in value:
        raise PydanticCustomError("slash_in_id", "an id may not contain '/'")
    return value


STORABLE: Final = AfterValidator(_storable)
PATH_SAFE: Final = AfterValidator(_path_safe)

#: Text bound for a column: no NUL; the bounded kinds also no longer than their column.
Text = Annotated[str, STORABLE]
EntityId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_ID_LENGTH),
    STORABLE,
    PATH_SAFE,
]
#: An id the writer may leave empty, for the server to make one.
IdOrEmpty = Annotated[
    str,
    StringConstraints(max_length=MAX_ID_LENGTH),
    STORABLE,
    PATH_SAFE,
]
ShortText = Annotated[str, StringConstraints(max_length=MAX_ID_LENGTH), STORABLE]
ActivityName = Annotated[str, StringConstraints(max_length=MAX_ACTIVITY_LENGTH), STORABLE]
SourceId = Annotated[str, StringConstraints(max_length=MAX_SOURCE_ID_LENGTH), STORABLE]
EngineKind = Annotated[str, StringConstraints(max_length=MAX_ENGINE_KIND_LENGTH), STORABLE]
EngineLabel = Annotated[str, StringConstraints(max_length=MAX_ENGINE_LABEL_LENGTH), STORABLE]
