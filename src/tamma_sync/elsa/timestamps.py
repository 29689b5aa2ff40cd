"""ELSA's `DateTimeOffset` timestamps, kept exactly.

ELSA sends ISO-8601 with up to 7 fractional digits (.NET ticks of 100 ns) and an offset.
Python's `datetime` keeps only microseconds, so a cursor read into a `datetime` and sent
back would be up to 99 ns early or late, and rows would be skipped or re-read forever.
`ElsaTimestamp` keeps the instant as an integer count of ticks since the Unix epoch.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, date, datetime
from typing import Any, Final

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

TICKS_PER_SECOND: Final = 10_000_000
TICKS_PER_MILLISECOND: Final = 10_000
TICKS_PER_DAY: Final = 86_400 * TICKS_PER_SECOND
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_MAX_OFFSET_MINUTES: Final = 14 * 60
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

_ISO = re.compile(
    r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})[T ]"
    r"(?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2})"
    r"(?:[.,](?P<fraction>\d{1,7}))?"
    r"(?P<offset>Z|z|[+-]\d{2}:?\d{2})?"
)
#: What .NET writes for UTC; the hour is bounded here, as `fromisoformat` reads `24:00` in
#: some Python releases.
_DOTNET_UTC = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-9]{2}:[0-9]{2}(?:\.([0-9]{1,7}))?(?:Z|\+00:00)"
)


class ElsaTimestamp(int):
    """An instant as 100-ns ticks since 1970-01-01T00:00:00Z (negative before it).

    An `int` of those ticks: a walk compares, hashes and sorts every row's stamps, which
    costs an int a tenth of what it cost a dataclass. Arithmetic on one gives a plain int;
    `shifted` gives a stamp."""

    __slots__ = ()

    @property
    def ticks(self) -> int:
        return int(self)

    @classmethod
    def parse(cls, text: str) -> ElsaTimestamp:
        """Parse ELSA's ISO-8601 form; no offset means UTC (how .NET writes a UTC `DateTime`)."""
        ticks = _utc_ticks(text)
        if ticks is not None:
            return cls(ticks)
        match = _ISO.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"not an ISO-8601 timestamp: {text!r}")
        year, month, day, hour, minute, second, fraction, offset = match.groups()
        hours, minutes, secs = int(hour), int(minute), int(second)
        if hours > 23 or minutes > 59 or secs > 59:
            raise ValueError(f"invalid time of day in timestamp {text!r}")
        start = _day_start(year, month, day)
        if start is None:
            raise ValueError(f"invalid date in timestamp {text!r}")
        seconds = start + hours * 3600 + minutes * 60 + secs
        offset_minutes = _offset_minutes(offset)
        if offset_minutes is None:
            raise ValueError(f"invalid UTC offset in timestamp {text!r}")
        seconds -= offset_minutes * 60
        return cls(seconds * TICKS_PER_SECOND + int((fraction or "").ljust(7, "0")))

    @classmethod
    def from_epoch_ms(cls, epoch_ms: int) -> ElsaTimestamp:
        return cls(epoch_ms * TICKS_PER_MILLISECOND)

    @classmethod
    def from_datetime(cls, value: datetime) -> ElsaTimestamp:
        """From an aware `datetime` (naive ones are refused: their offset is a guess)."""
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime: give it a timezone")
        delta = value - datetime(1970, 1, 1, tzinfo=UTC)
        seconds = delta.days * 86_400 + delta.seconds
        return cls(seconds * TICKS_PER_SECOND + delta.microseconds * 10)

    @property
    def epoch_ms(self) -> int:
        """Epoch milliseconds, floored (the unit of the domain models)."""
        return int(self) // TICKS_PER_MILLISECOND

    @property
    def is_midnight(self) -> bool:
        """True when the UTC time of day is exactly 00:00:00.0000000."""
        return int(self) % TICKS_PER_DAY == 0

    def shifted(self, ticks: int) -> ElsaTimestamp:
        return ElsaTimestamp(int(self) + ticks)

    def to_iso(self) -> str:
        """UTC with all 7 fractional digits and `+00:00`, as ELSA writes it."""
        seconds, fraction = divmod(int(self), TICKS_PER_SECOND)
        days, second_of_day = divmod(seconds, 86_400)
        day = date.fromordinal(days + _EPOCH_ORDINAL)
        hour, rest = divmod(second_of_day, 3600)
        minute, second = divmod(rest, 60)
        return f"{day.isoformat()}T{hour:02d}:{minute:02d}:{second:02d}.{fraction:07d}+00:00"

    def __str__(self) -> str:
        return self.to_iso()

    def __format__(self, format_spec: str) -> str:
        return format(self.to_iso(), format_spec)

    def __repr__(self) -> str:
        return f"ElsaTimestamp({self.to_iso()!r})"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source_type: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        """Validate from an ISO string (or an instance); serialize back to the 7-digit ISO form."""
        from_str = core_schema.no_info_after_validator_function(cls.parse, core_schema.str_schema())
        return core_schema.json_or_python_schema(
            json_schema=from_str,
            python_schema=core_schema.union_schema([core_schema.is_instance_schema(cls), from_str]),
            serialization=core_schema.plain_serializer_function_ser_schema(
                cls.to_iso, when_used="always"
            ),
        )


def _utc_ticks(text: str) -> int | None:
    """The ticks of `text` if it has the form .NET writes for UTC (up to 7 fractional digits,
    then `Z` or `+00:00`), read by `datetime.fromisoformat` in C with only the fraction
    taken from the text: half the time of `parse`'s own reading (1.3 µs against 2.6, and a
    sync reads three timestamps an instance). None for any other form, or an invalid date
    or time: `parse` then reads it (or refuses it) itself."""
    match = _DOTNET_UTC.fullmatch(text)
    if match is None:
        return None
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        return None
    since_epoch = instant - _EPOCH
    seconds = since_epoch.days * 86_400 + since_epoch.seconds
    return seconds * TICKS_PER_SECOND + int((match.group(2) or "").ljust(7, "0"))


@functools.lru_cache(maxsize=4096)
def _day_start(year: str, month: str, day: str) -> int | None:
    """Seconds from the epoch to the start of the day, None if there is no such day
    (cached: a sync reads many timestamps of the same few days)."""
    try:
        ordinal = date(int(year), int(month), int(day)).toordinal()
    except ValueError:
        return None
    return (ordinal - _EPOCH_ORDINAL) * 86_400


@functools.lru_cache(maxsize=256)
def _offset_minutes(offset: str | None) -> int | None:
    """The offset in minutes east of UTC; None if it is not a valid one."""
    if offset is None or offset in ("Z", "z"):
        return 0
    digits = offset[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:])
    total = hours * 60 + minutes
    if minutes > 59 or total > _MAX_OFFSET_MINUTES:
        return None
    return -total if offset[0] == "-" else total
