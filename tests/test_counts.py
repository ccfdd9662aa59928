"""Token count columns: the buffer-level fast path against the per-value reference."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
from hypothesis import example, given
from hypothesis import strategies as st

from llmtraces.report import Report
from llmtraces.text import ReadContext
from llmtraces.text.csv import CsvBatch, counts_as_written, parse_counts, plain_counts

_DIGITS = st.text("0123456789", min_size=1, max_size=20)  # 19+ digits: not a count
_ODD = st.sampled_from(["", "-5", "+5", " 5", "5 ", "5a", "1.0", "1e3", "٣", "/", ":", "0x1"])


def _reference(value: str | None) -> tuple[int | None, bool, bool]:
    """(count, valid, leading zero) of one cell, as the per-value path defines them."""
    valid = value is not None and re.fullmatch(r"[0-9]{1,18}", value) is not None
    count = int(value) if valid and value is not None else (None if value is None else 0)
    return count, valid, valid and value is not None and len(value) > 1 and value[0] == "0"


@example(values=["0", "5", "10"], odd=None, at=0, start=0)
@example(values=["007", "5"], odd=None, at=0, start=2)
@example(values=["5"], odd="", at=0, start=0)
@example(values=["5"], odd=":", at=0, start=0)  # the bytes just past the digits
@example(values=["5"], odd="/", at=1, start=0)
@example(values=["9" * 18, "1"], odd="9" * 19, at=1, start=1)
@given(values=st.lists(_DIGITS, min_size=1, max_size=30),
       odd=st.one_of(st.none(), _ODD, st.just(None).map(lambda _: "null")),
       at=st.integers(0, 30), start=st.integers(0, 3))
def test_counts_fast_path_gives_what_the_per_value_path_gives(values: list[str],
                                                              odd: str | None, at: int,
                                                              start: int):
    cells: list[str | None] = list(values)
    if odd is not None:  # one odd cell among digits: the whole block is judged
        cells.insert(at % len(cells), None if odd == "null" else odd)
    raw = pa.array(["12"] * start + cells, pa.string()).slice(start)  # offsets not at 0
    truth = [_reference(v) for v in cells]
    every = all(valid for _, valid, _ in truth)

    fast = plain_counts(raw)
    assert (fast is not None) == every
    if fast is not None:
        assert fast.to_pylist() == [c for c, _, _ in truth]

    batch = CsvBatch(0, {"n": raw}, len(raw))
    report = Report()
    count, ok, zero = counts_as_written(ReadContext(Path("t.csv"), report), batch, "n")
    assert count.to_pylist() == [c for c, _, _ in truth]
    assert (ok is None) == every
    if ok is not None:
        assert [bool(v) for v in ok.to_pylist()] == [valid for _, valid, _ in truth]
    leading = [z for _, _, z in truth]
    got = [bool(v) for v in zero.to_pylist()] if zero is not None else [False] * len(cells)
    assert got == leading
    assert (zero is None) == (not any(leading)) or not every
    again = parse_counts(ReadContext(Path("t.csv"), Report()), batch, "n")
    assert again.to_pylist() == count.to_pylist()
    assert (report.counts[("error", "not-integer")] + report.counts[("error", "missing")]
            + report.counts[("error", "negative")]) == sum(
        1 for v, (_, valid, _) in zip(cells, truth, strict=True) if v is not None and not valid)


def test_counts_range_is_still_checked():
    raw = pa.array(["1", str(1 << 31), "7"], pa.string())
    report = Report()
    got = parse_counts(ReadContext(Path("t.csv"), report), CsvBatch(0, {"n": raw}, 3), "n",
                       most=(1 << 31) - 1)
    assert got.to_pylist() == [1, 0, 7]
    assert [(p.code, p.line) for p in report.problems] == [("range", 3)]
