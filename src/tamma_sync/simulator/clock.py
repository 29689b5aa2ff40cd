"""Time as .NET ticks (100 ns) since the Unix epoch, ELSA's timestamp text, and the clock.

Integers keep a million timestamps in an `array` and compare exactly at ELSA's precision
(7 fractional digits), which `datetime` (microseconds) cannot.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Final

from tamma_sync.simulator.ids import IdCodec

TICKS_PER_SECOND: Final = 10_000_000
TICKS_PER_DAY: Final = 86_400 * TICKS_PER_SECOND
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()

#: Rounding units that give timestamps 7, 6, 5, 4, 3 or 0 fractional digits, as real ELSA
#: data shows (.NET ticks, PostgreSQL microseconds, SQLite milliseconds, whole seconds).
PRECISION_UNITS: Final = (1,) * 8 + (10,) * 4 + (100, 1_000, 10_000, TICKS_PER_SECOND)

_TIMESTAMP: Final = re.compile(
    r"\s*(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
    r"\s*(Z|[+-]\d{2}(?::?\d{2})?)?\s*",
    re.IGNORECASE,
)


def to_ticks(moment: datetime) -> int:
    """Ticks of an aware datetime."""
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta // timedelta(microseconds=1)) * 10


def duration_ticks(span: timedelta) -> int:
    """Ticks of a duration."""
    return (span // timedelta(microseconds=1)) * 10


def round_down(ticks: int, selector: int) -> int:
    """Drop fractional digits as chosen by `selector` (any integer; its low 4 bits count)."""
    unit = PRECISION_UNITS[selector & 15]
    return ticks - ticks % unit


@lru_cache(maxsize=8192)
def _date_text(day: int) -> str:
    return date.fromordinal(_EPOCH_ORDINAL + day).isoformat()


def format_ticks(ticks: int) -> str:
    """ELSA's text for a UTC timestamp: ISO-8601, `+00:00`, trailing zero digits trimmed."""
    day, rest = divmod(ticks, TICKS_PER_DAY)
    seconds, fraction = divmod(rest, TICKS_PER_SECOND)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    text = f"{_date_text(day)}T{hours:02d}:{minutes:02d}:{seconds:02d}"
    if fraction:
        text += "." + f"{fraction:07d}".rstrip("0")
    return text + "+00:00"


@dataclass(frozen=True, slots=True)
class ParsedTimestamp:
    """A request timestamp: the instant, and the calendar day it names if it is a midnight."""

    ticks: int
    #: ELSA's whole-day window [start, end) when the time of day is exactly 00:00:00 in the
    #: timestamp's own offset; the day starts at midnight in the *server's* offset.
    whole_day: tuple[int, int] | None


def parse_timestamp(text: str, server_offset_ticks: int) -> ParsedTimestamp:
    """Parse a DateTimeOffset as ASP.NET would; raise ValueError if it is not one.

    A missing offset means the server's local offset, as `DateTimeOffset.Parse` assumes.
    """
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        raise ValueError(f"not a timestamp: {text!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    day_ordinal = date(int(year), int(month), int(day)).toordinal() - _EPOCH_ORDINAL
    hours, minutes, seconds = int(hour or 0), int(minute or 0), int(second or 0)
    if hours > 23 or minutes > 59 or seconds > 59:
        raise ValueError(f"not a timestamp: {text!r}")
    fraction_ticks = int((fraction or "0")[:7].ljust(7, "0"))
    local = (
        day_ordinal * TICKS_PER_DAY
        + (hours * 3600 + minutes * 60 + seconds) * TICKS_PER_SECOND
        + fraction_ticks
    )
    offset = server_offset_ticks if zone is None else _offset_ticks(zone)
    whole_day = None
    if local % TICKS_PER_DAY == 0:
        start = day_ordinal * TICKS_PER_DAY - server_offset_ticks
        whole_day = (start, start + TICKS_PER_DAY)
    return ParsedTimestamp(ticks=local - offset, whole_day=whole_day)


def _offset_ticks(zone: str) -> int:
    if zone.upper() == "Z":
        return 0
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if hours > 14 or minutes > 59:
        raise ValueError(f"bad offset: {zone!r}")
    return sign * (hours * 3600 + minutes * 60) * TICKS_PER_SECOND


class Clock:
    """Issues strictly increasing timestamps, one per mutation step.

    Virtual (default): step k is `start + k * quantum` plus a seeded jitter below half a
    quantum, so runs are reproducible. Wall: the real time. Either way each timestamp's
    precision varies (7 down to 0 fractional digits) the way ELSA data does.
    `repeat_share` (realism's ties): that share of ticks repeats the previous stamp, as a
    coarse clock (or a coarse database column) gives two commits the same time.
    """

    def __init__(
        self,
        *,
        start: int,
        quantum: int,
        wall: bool,
        codec: IdCodec,
        repeat_share: float = 0.0,
    ) -> None:
        self._start = start
        self._quantum = max(quantum, 1)
        self._wall = wall
        self._codec = codec
        self._repeat = int(repeat_share * 65_536)
        self._steps = 0
        self.last = start

    def tick(self) -> int:
        """The next timestamp."""
        self._steps += 1
        noise = self._codec.hash(0x7C10C4, self._steps)
        if self._repeat and self._steps > 1 and (noise >> 16) & 0xFFFF < self._repeat:
            return self.last
        if self._wall:
            raw = time.time_ns() // 100
        else:
            raw = self._start + self._steps * self._quantum + noise % max(self._quantum // 2, 1)
        ticks = max(round_down(raw, noise >> 32), self.last + 1)
        self.last = ticks
        return ticks


def wall_ticks() -> int:
    """The current real time in ticks."""
    return time.time_ns() // 100
