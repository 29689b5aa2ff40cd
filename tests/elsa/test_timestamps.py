"""ElsaTimestamp: exact parsing of ELSA's 7-digit ISO timestamps, and the midnight rule."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import BaseModel

from tamma_sync.elsa import ElsaTimestamp, filter_timestamp
from tamma_sync.elsa.timestamps import TICKS_PER_SECOND

# 2024-12-04T16:22:39Z in whole seconds since the epoch.
BASE_SECONDS = 1_733_329_359


@pytest.mark.parametrize(
    ("fraction", "ticks"),
    [
        ("", 0),
        (".0", 0),
        (".06", 600_000),
        (".064", 640_000),
        (".0640", 640_000),
        (".06407", 640_700),
        (".064075", 640_750),
        (".0640751", 640_751),
    ],
)
def test_parses_zero_to_seven_fractional_digits_exactly(fraction: str, ticks: int) -> None:
    parsed = ElsaTimestamp.parse(f"2024-12-04T16:22:39{fraction}+00:00")
    assert parsed.ticks == BASE_SECONDS * TICKS_PER_SECOND + ticks


def test_seventh_digit_survives_a_round_trip() -> None:
    """A datetime would drop the 7th digit and move a cursor by up to 100 ns."""
    text = "2025-06-04T08:00:02.0712345+00:00"
    assert ElsaTimestamp.parse(text).to_iso() == text
    assert ElsaTimestamp.parse(text) > ElsaTimestamp.parse("2025-06-04T08:00:02.0712344+00:00")


@pytest.mark.parametrize(
    "text",
    [
        "2024-12-04T16:22:39.5+00:00",
        "2024-12-04T16:22:39.5Z",
        "2024-12-04T16:22:39.5z",
        "2024-12-04T16:22:39.5",
        "2024-12-04T18:22:39.5+02:00",
        "2024-12-04T18:22:39.5+0200",
        "2024-12-04T10:52:39.5-05:30",
        "2024-12-04 16:22:39,5+00:00",
    ],
)
def test_offsets_all_name_the_same_instant(text: str) -> None:
    expected = BASE_SECONDS * TICKS_PER_SECOND + 5_000_000
    assert ElsaTimestamp.parse(text).ticks == expected
    assert ElsaTimestamp.parse(text).to_iso() == "2024-12-04T16:22:39.5000000+00:00"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2024-12-04",
        "2024-12-04T16:22:39.12345678+00:00",  # 8 digits: not .NET, not exact
        "2024-02-30T00:00:00+00:00",
        "2024-12-04T24:00:00+00:00",
        "2024-12-04T16:60:00+00:00",
        "2024-12-04T16:22:39+15:00",
        "2024-12-04T16:22:39+01:75",
        # .NET's own UTC form, read apart (`_utc_ticks`), refuses what the rest refuses.
        "2024-02-30T00:00:00.5Z",
        "2024-12-04T24:00:00.0+00:00",
        "2024-12-04T16:60:00.1Z",
        "2024-12-04T16:22:60.1+00:00",
        "2024-12-04T16:22:39.12345678Z",
    ],
)
def test_rejects_what_is_not_a_timestamp(text: str) -> None:
    with pytest.raises(ValueError, match="timestamp"):
        ElsaTimestamp.parse(text)


def test_dotnet_utc_form_reads_as_every_other_form_of_the_instant() -> None:
    """.NET's UTC form is read by `datetime.fromisoformat` (faster); the same instant
    written with `+0000` is read by the regular expression: both agree, to the tick,
    from year 1 to 9999, before 1970 and on leap days."""
    import random

    rng = random.Random(3)
    first = ElsaTimestamp.parse("0001-01-01T00:00:00.0000000+00:00").ticks
    last = ElsaTimestamp.parse("9999-12-31T23:59:59.9999999+00:00").ticks
    leap_day = ElsaTimestamp.parse("2024-02-29T12:00:00.5+0000").ticks
    whole_seconds = [rng.randrange(-(10**9), 10**9) * TICKS_PER_SECOND for _ in range(100)]
    samples = [first, last, leap_day, -1, 0, *whole_seconds]
    samples += [rng.randrange(first, last) for _ in range(2_000)]
    for ticks in samples:
        text = ElsaTimestamp(ticks).to_iso()
        assert ElsaTimestamp.parse(text).ticks == ticks
        trimmed = re.sub(r"\.?0+\+00:00$", "+00:00", text)  # as ELSA's JSON writes it
        assert ElsaTimestamp.parse(trimmed).ticks == ticks
        assert ElsaTimestamp.parse(text.replace("+00:00", "Z")).ticks == ticks
        assert ElsaTimestamp.parse(text.replace("+00:00", "+0000")).ticks == ticks


def test_epoch_milliseconds_floor_even_before_1970() -> None:
    assert ElsaTimestamp.parse("2024-12-04T16:22:39.0649999+00:00").epoch_ms == (
        BASE_SECONDS * 1000 + 64
    )
    before_epoch = ElsaTimestamp.parse("1969-12-31T23:59:59.9995+00:00")
    assert before_epoch.ticks == -5_000
    assert before_epoch.epoch_ms == -1
    assert before_epoch.to_iso() == "1969-12-31T23:59:59.9995000+00:00"


def test_conversions_from_python_values() -> None:
    assert ElsaTimestamp.from_epoch_ms(1_733_329_359_064).to_iso() == (
        "2024-12-04T16:22:39.0640000+00:00"
    )
    aware = datetime(2024, 12, 4, 18, 22, 39, 64075, tzinfo=timezone(timedelta(hours=2)))
    assert ElsaTimestamp.from_datetime(aware) == ElsaTimestamp.parse(
        "2024-12-04T16:22:39.064075+00:00"
    )
    with pytest.raises(ValueError, match="naive"):
        ElsaTimestamp.from_datetime(datetime(2024, 1, 1))
    assert ElsaTimestamp.from_datetime(datetime(1970, 1, 1, tzinfo=UTC)).ticks == 0


class _Row(BaseModel):
    at: ElsaTimestamp
    maybe: ElsaTimestamp | None = None


def test_pydantic_reads_json_strings_and_writes_seven_digits() -> None:
    row = _Row.model_validate_json('{"at": "2024-12-04T16:22:39.06\\u002B00:00"}')
    assert row.at.ticks == BASE_SECONDS * TICKS_PER_SECOND + 600_000
    assert row.maybe is None
    assert row.model_dump(mode="json") == {"at": "2024-12-04T16:22:39.0600000+00:00", "maybe": None}
    assert _Row(at=row.at).at is row.at
    with pytest.raises(ValueError, match="timestamp"):
        _Row.model_validate_json('{"at": "not a time"}')


@pytest.mark.parametrize(
    ("cursor", "sent"),
    [
        # Exact UTC midnight: one tick earlier, so `>=` still includes the boundary row.
        ("2024-06-01T00:00:00+00:00", "2024-05-31T23:59:59.9999999+00:00"),
        ("2024-06-01T00:00:00.0000000Z", "2024-05-31T23:59:59.9999999+00:00"),
        ("2024-06-01T02:00:00+02:00", "2024-05-31T23:59:59.9999999+00:00"),
        # Anything else is sent as it is, all 7 digits.
        ("2024-06-01T00:00:00.0000001+00:00", "2024-06-01T00:00:00.0000001+00:00"),
        ("2024-05-31T23:59:59.9999999+00:00", "2024-05-31T23:59:59.9999999+00:00"),
        ("2024-06-01T00:00:00+02:00", "2024-05-31T22:00:00.0000000+00:00"),
        ("2024-06-01T12:30:00.5+00:00", "2024-06-01T12:30:00.5000000+00:00"),
    ],
)
def test_filter_timestamp_never_sends_midnight(cursor: str, sent: str) -> None:
    assert filter_timestamp(ElsaTimestamp.parse(cursor)) == sent
    assert not ElsaTimestamp.parse(sent).is_midnight
