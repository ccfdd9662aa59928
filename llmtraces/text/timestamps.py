"""Vectorised parsing of wall-clock timestamp strings into epoch microseconds, losing nothing.

Accepted: ``YYYY-MM-DD[ T]HH:MM:SS[.f{1,9}][Z|±HH:MM]``. That covers Azure 2023
(7 fractional digits, no zone), Azure 2024 (``+00:00``, fraction omitted when zero) and
Azure 2025 (``T``, milliseconds, ``Z``). Digits finer than a microsecond are not silently
dropped: :func:`parse_timestamps` returns a mask of the rows that had them.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from . import ReadContext
from .csv import CsvBatch, report_rows

_PATTERN = (r"^(?P<date>\d{4}-\d{2}-\d{2})[ T](?P<time>\d{2}:\d{2}:\d{2})"
            r"(?:\.(?P<frac>\d{1,9}))?(?P<zone>Z|[+-]\d{2}:\d{2})?$")


@dataclass(frozen=True)
class ParsedTimes:
    """Epoch µs per row (0 where invalid), and masks of invalid, sub-µs and zone-less rows."""

    epoch_us: pa.Array
    invalid: pa.Array
    sub_us: pa.Array
    naive: pa.Array


def parse_timestamps(raw: pa.Array, naive_offset_min: int = 0) -> ParsedTimes:
    """Parse timestamp strings; zone-less values are taken at ``naive_offset_min`` from UTC.

    A block written in one style parses with Arrow's ISO-8601 cast (fast); anything else
    (mixed styles, bad values) takes the exact regex path, which finds every invalid row.
    """
    return _parse_uniform(raw, naive_offset_min) or _parse_exact(raw, naive_offset_min)


def _parse_uniform(raw: pa.Array, naive_offset_min: int) -> ParsedTimes | None:
    if len(raw) == 0 or raw.null_count or pc.min(pc.utf8_length(raw)).as_py() < 19:
        return None
    first = raw[0].as_py()
    zoned = first.endswith("Z") or (first[-6] in "+-" and first[-3] == ":")
    target = pa.timestamp("ns", tz="UTC") if zoned else pa.timestamp("ns")
    try:
        # The cast refuses zone-less values for a zoned target and the reverse, so one
        # successful cast means the whole block has the first row's style.
        ns = pc.cast(pc.cast(raw, target), pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if not zoned and naive_offset_min:
        ns = pc.subtract(ns, naive_offset_min * 60_000_000_000)
    us = pc.divide(ns, 1000)  # trace epochs are after 1970, so truncation is the floor
    sub_us = pc.not_equal(pc.subtract(ns, pc.multiply(us, 1000)), 0)
    none = pc.is_null(us)  # all false: every value parsed
    return ParsedTimes(us, none, sub_us, none if zoned else pc.invert(none))


def _parse_exact(raw: pa.Array, naive_offset_min: int) -> ParsedTimes:
    parts = pc.extract_regex(raw, _PATTERN)
    matched = parts.is_valid()
    date = pc.struct_field(parts, "date")
    time = pc.struct_field(parts, "time")
    base = pc.strptime(pc.binary_join_element_wise(date, time, " "), format="%Y-%m-%d %H:%M:%S",
                       unit="us", error_is_null=True)
    invalid = pc.invert(pc.and_(matched, base.is_valid()))
    ok_base = pc.fill_null(pc.cast(base, pa.int64()), 0)
    frac_ns = pc.cast(pc.utf8_rpad(pc.fill_null(pc.struct_field(parts, "frac"), ""), 9, "0"),
                      pa.int64())
    zone = pc.fill_null(pc.struct_field(parts, "zone"), "")
    naive = pc.and_(matched, pc.equal(zone, ""))
    sign = pc.if_else(pc.starts_with(zone, "-"), -1, 1)
    hours = pc.cast(pc.if_else(pc.greater(pc.utf8_length(zone), 1),
                               pc.utf8_slice_codeunits(zone, 1, 3), "0"), pa.int64())
    mins = pc.cast(pc.if_else(pc.greater(pc.utf8_length(zone), 1),
                              pc.utf8_slice_codeunits(zone, 4, 6), "0"), pa.int64())
    offset_min = pc.if_else(naive, naive_offset_min,
                            pc.multiply(sign, pc.add(pc.multiply(hours, 60), mins)))
    epoch_us = pc.subtract(pc.add(ok_base, pc.divide(frac_ns, 1000)),
                           pc.multiply(offset_min, 60_000_000))
    epoch_us = pc.if_else(invalid, 0, epoch_us)
    # Integer division: frac_ns is non-negative, so this is the sub-microsecond remainder.
    rem = pc.subtract(frac_ns, pc.multiply(pc.divide(frac_ns, 1000), 1000))
    sub_us = pc.and_(pc.invert(invalid), pc.not_equal(rem, 0))
    return ParsedTimes(epoch_us, invalid, sub_us, naive)


@dataclass(frozen=True)
class WallClock:
    """One block's wall-clock timestamps on the trace's time axis.

    ``arrival`` is µs since ``origin`` (null where the timestamp is bad); ``first`` is the row
    of this block whose instant became the origin, when it was set here.
    """

    arrival: pa.Array
    times: ParsedTimes
    origin: int | None
    first: int | None


def wall_clock(ctx: ReadContext, b: CsvBatch, column: str, expected: str, origin: int | None,
               *, parse_as: pa.Array | None = None, naive_offset_min: int = 0) -> WallClock:
    """Parse and check a block's timestamps (``parse_as``: the column's text rewritten for the
    parser), reporting bad ones (``expected`` says the form) and digits finer than 1 µs, and
    rebase them on ``origin``, which the first valid timestamp of the trace sets (it goes to
    ``time_origin``). Zone-less values are read at ``naive_offset_min`` from UTC and flag the
    trace's zone as assumed."""
    t = parse_timestamps(b.columns[column] if parse_as is None else parse_as, naive_offset_min)
    report_rows(ctx, b, t.invalid, column, "timestamp", f"expected {expected}")
    report_rows(ctx, b, t.sub_us, column, "sub-microsecond",
                "digits finer than 1 µs do not fit arrival_us; the raw value is kept in extra",
                level="warning")
    if pc.any(t.naive).as_py():
        ctx.meta["naive_timestamps"] = True
    first = None
    if origin is None:
        valid = pc.indices_nonzero(pc.invert(t.invalid))
        if len(valid):
            first = valid[0].as_py()
            origin = t.epoch_us[first].as_py()
            ctx.meta["time_origin"] = iso_utc(origin)
    arrival = pc.if_else(t.invalid, pa.scalar(None, pa.int64()),
                         pc.subtract(t.epoch_us, origin or 0))
    return WallClock(arrival, t, origin, first)


def iso_utc(epoch_us: int) -> str:
    """``epoch_us`` as an ISO-8601 UTC instant, e.g. ``2023-11-16T18:17:03.979960Z``."""
    t = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=epoch_us)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def timestamp_style(example: str) -> dict[str, object]:
    """How a file writes its timestamps, from one valid value, so a writer can write them back.

    ``sep`` is ``" "`` or ``"T"``, ``digits`` the fractional digits, ``zone`` the suffix
    (``""``, ``"Z"``, ``"+00:00"``) and ``omit_zero_fraction`` whether a zero fraction is left
    out (the Azure 2024 habit, which always comes with ``+00:00``).
    """
    m = re.match(_PATTERN, example)
    if m is None:
        raise ValueError(f"not a timestamp: {example!r}")
    zone = m.group("zone") or ""
    frac = m.group("frac") or ""
    return {"sep": example[10], "digits": len(frac) or 6, "zone": zone,
            "omit_zero_fraction": bool(zone) and zone != "Z"}


def epoch_us_of(iso: str) -> int:
    """Microseconds since the Unix epoch of an ISO-8601 instant such as ``time_origin``."""
    t = dt.datetime.fromisoformat(iso)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    delta = t - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def format_timestamps(epoch_us: pa.Array, style: dict[str, object]) -> pa.Array:
    """Epoch microseconds as timestamp strings in a file's own ``style`` (see timestamp_style).

    Fractions are written with the style's digits when that loses nothing, else with 6. A
    ``date_sep`` in the style replaces the date's ``-`` (nvidia-smi writes ``2025/06/13``).
    """
    secs = pc.divide(epoch_us, 1_000_000)
    frac = pc.subtract(epoch_us, pc.multiply(secs, 1_000_000))
    d = style.get("date_sep", "-")
    base = pc.strftime(pc.cast(pc.cast(secs, pa.int64()), pa.timestamp("s")),
                       format=f"%Y{d}%m{d}%d{style.get('sep', ' ')}%H:%M:%S")
    six = pc.utf8_lpad(pc.cast(frac, pa.string()), 6, "0")
    digits = int(style.get("digits", 6))  # type: ignore[call-overload]
    if digits < 6:
        step = 10 ** (6 - digits)
        if not pc.all(pc.equal(pc.multiply(pc.divide(frac, step), step), frac)).as_py():
            digits = 6
    if digits > 6:
        text = pc.binary_join_element_wise(six, "0" * (digits - 6), "")
    else:
        text = pc.utf8_slice_codeunits(six, 0, digits)
    text = pc.binary_join_element_wise(".", text, "")
    if style.get("omit_zero_fraction"):
        text = pc.if_else(pc.equal(frac, 0), "", text)
    return pc.binary_join_element_wise(base, text, str(style.get("zone", "")), "")
