"""Read a ServeGen client (``chunk-N-trace.csv`` and the ``chunk-N-dataset.json`` beside it)
into a :class:`~llmtraces.transforms.TraceModel`: :func:`read_servegen`.

The layout follows ServeGen's own loader (``servegen/clientpool.py``, ``ClientPool._load_data``,
github.com/alibaba/ServeGen at f891d1189eb32b3868dfc443800c4150548c282a): the CSV has no header
and rows ``window_start_s,rate,cv,pattern,arg1,arg2``, with an empty pattern for a window
with no requests; the JSON maps a window start to ``{field: "<Python dict literal {value:
probability}>"}``, and a window where any field's PMF is ``{}`` is skipped. The literals are
read by a strict number pattern, never evaluated.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from ..errors import InvalidTraceError, NoSuchFileError
from ..fetching.checksums import compute
from ..report import Report
from ..text import one_line
from ..text.limits import max_line_bytes, require_regular_file
from .modeled import TraceModel
from .servegen_model import (
    FIELDS,
    METHOD,
    ArrivalWindow,
    Category,
    Law,
    LengthWindow,
    Pmf,
    ServeGenWorkload,
)

LICENCE = {
    "spdx": "Apache-2.0",
    "url": "https://github.com/alibaba/ServeGen/blob/f891d1189eb32b3868dfc443800c4150548c282a/"
           "LICENSE",
    "redistributable": True, "commercial_use": True,
    "attribution": "ServeGen workload data, Alibaba (github.com/alibaba/ServeGen), Apache-2.0; "
                   "cite Xiang et al., arXiv:2505.09999.",
}
CITATION = {
    "text": "Yuxing Xiang, Xue Li, Kun Qian, Wenyuan Yu, Ennan Zhai, Xin Jin. ServeGen: Workload "
            "Characterization and Generation of Large Language Model Serving in Production. "
            "arXiv:2505.09999, 2025.",
    "doi": "10.48550/arXiv.2505.09999",
}
#: Fields whose PMF support is a count (a whole number >= 0); the rest are ratios in [0, 1].
_RATIOS = {"reason_ratio"}
_LAWS: dict[str, Law | None] = {"Gamma": "gamma", "Weibull": "weibull", "": None}
_NUMBER = r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_PAIR = re.compile(rf"\s*({_NUMBER})\s*:\s*({_NUMBER})\s*")
_LITERAL = re.compile(rf"\{{\s*(?:{_PAIR.pattern}(?:,{_PAIR.pattern})*,?\s*)?\}}")
#: The lines of a pretty-printed dataset JSON that open a window or hold a field.
_KEY_LINE = re.compile(r'^\s*"([^"]*)"\s*:\s*([{"])')


class Problems:
    """Problems of one read, raised as one :class:`InvalidTraceError` naming the first."""

    def __init__(self) -> None:
        self.report = Report()

    def add(self, file: Path, line: int | None, message: str, value: str | None = None
            ) -> None:
        self.report.error("servegen", str(file), message, line=line,
                          value=None if value is None else value[:80])

    def raise_any(self) -> None:
        if self.report.errors:
            more = self.report.errors - 1
            tail = f" (and {more:,} more problem(s))" if more else ""
            raise InvalidTraceError(f"{self.report.problems[0]}{tail}", self.report)


def dataset_path(trace_csv: Path) -> Path:
    """The ``chunk-N-dataset.json`` that belongs beside ``chunk-N-trace.csv``."""
    name = trace_csv.name
    if not name.endswith("-trace.csv"):
        raise InvalidTraceError(f"{trace_csv}: not a ServeGen trace file; expected a name "
                                f"ending in -trace.csv (chunk-N-trace.csv)")
    return trace_csv.with_name(name[: -len("-trace.csv")] + "-dataset.json")


def _float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _row(path: Path, line: int, text: str, out: Problems) -> ArrivalWindow | None:
    """One CSV line as a window, or None after reporting why it is malformed."""
    fields = text.split(",")
    if len(fields) != 6:
        out.add(path, line, f"expected 6 fields (window_start_s,rate,cv,pattern,arg1,arg2), "
                f"got {len(fields)}", text)
        return None
    start, rate, cv, pattern, arg1, arg2 = fields
    if not start.isdigit():
        out.add(path, line, "window_start_s must be whole seconds >= 0", start)
        return None
    nums = [_float(v) for v in (rate, cv, arg1, arg2)]
    for name, raw, num in zip(("rate", "cv", "arg1", "arg2"), (rate, cv, arg1, arg2), nums,
                              strict=True):
        if num is None or num < 0:
            out.add(path, line, f"{name} must be a finite number >= 0", raw)
            return None
    if pattern not in _LAWS:
        out.add(path, line, "pattern must be Gamma, Weibull or empty", pattern)
        return None
    r, c, shape, scale = (float(n or 0.0) for n in nums)
    law = _LAWS[pattern]
    if law is None and r > 0:
        out.add(path, line, "rate > 0 with an empty pattern (ServeGen would make no "
                "requests); expected Gamma or Weibull", text)
        return None
    if law is not None and not (r > 0 and shape > 0 and scale > 0):
        out.add(path, line, f"a {pattern} window needs rate, arg1 (shape) and arg2 (scale) "
                "> 0", text)
        return None
    return ArrivalWindow(start_s=float(start), rate=r, cv=c, law=law, shape=shape,
                         scale=scale)


def read_trace_csv(path: Path, out: Problems) -> tuple[list[ArrivalWindow], float]:
    """The windows of a ``chunk-N-trace.csv`` and their length (s, from the row spacing)."""
    require_regular_file(path)
    limit = max_line_bytes()
    windows: list[ArrivalWindow] = []
    lines: list[int] = []
    with path.open("rb") as fh:
        for number, raw in enumerate(iter(lambda: fh.readline(limit + 3), b""), 1):
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                out.add(path, number, f"not UTF-8 at byte {exc.start}")
                break
            if len(text) > limit:
                out.add(path, number, f"line longer than {limit:,} bytes")
                break
            w = _row(path, number, text, out)
            if w is not None:
                if windows and w.start_s <= windows[-1].start_s:
                    out.add(path, number, f"window starts must increase (previous: "
                            f"{windows[-1].start_s:g})", text.split(",")[0])
                windows.append(w)
                lines.append(number)
    if not windows and not out.report.errors:
        out.add(path, None, "no windows; expected rows window_start_s,rate,cv,pattern,arg1,arg2")
    out.raise_any()
    step = windows[1].start_s - windows[0].start_s if len(windows) > 1 else 600.0
    for prev, w, number in zip(windows, windows[1:], lines[1:], strict=False):
        if w.start_s - prev.start_s != step:
            out.add(path, number, f"windows must be evenly spaced ({step:g} s, from the first "
                    f"two rows)", f"{w.start_s:g}")
    out.raise_any()
    return windows, step


def parse_pmf(literal: str, field: str) -> tuple[Pmf | None, str | None]:
    """A PMF from its Python dict literal, or (None, why it is malformed); ``{}`` gives an
    empty PMF (values and probs empty)."""
    if not _LITERAL.fullmatch(literal):
        return None, "expected a dict literal {value: probability, ...} of numbers"
    pairs = sorted((float(k), float(p)) for k, p in _PAIR.findall(literal))
    if not pairs:
        return Pmf(values=[], probs=[]), None
    values = [k for k, _ in pairs]
    probs = [p for _, p in pairs]
    if len(set(values)) != len(values):
        return None, "a value appears twice"
    if field in _RATIOS:
        if not all(0.0 <= v <= 1.0 for v in values):
            return None, "ratios must be in [0, 1]"
    elif not all(v >= 0 and v == int(v) for v in values):
        return None, "values must be whole numbers >= 0"
    if not all(math.isfinite(p) and p >= 0 for p in probs):
        return None, "probabilities must be finite and >= 0"
    if abs(math.fsum(probs) - 1.0) > 1e-6:  # ServeGen's own check (np.isclose, atol 1e-6)
        return None, f"probabilities sum to {math.fsum(probs)!r}, expected 1"
    return Pmf(values=values, probs=probs), None


def _key_lines(text: str) -> dict[tuple[str, str], int]:
    """(window, field) -> line, and (window, "") -> line, for messages (pretty-printed JSON;
    a one-line file gives line 1 for all)."""
    found: dict[tuple[str, str], int] = {}
    window = ""
    for number, line in enumerate(text.splitlines(), 1):
        m = _KEY_LINE.match(line)
        if m and m.group(2) == "{":
            window = m.group(1)
            found[(window, "")] = number
        elif m:
            found.setdefault((window, m.group(1)), number)
    return found


def read_dataset_json(path: Path, starts: set[float], out: Problems
                      ) -> tuple[Category, list[LengthWindow]]:
    """The category and non-empty length windows of a ``chunk-N-dataset.json``."""
    require_regular_file(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
        doc = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidTraceError(f"{path}: not JSON: {one_line(exc)}") from None
    if not isinstance(doc, dict):
        raise InvalidTraceError(f"{path}:1: expected a JSON object {{window_start_s: {{field: "
                                f"pmf}}}}, got {type(doc).__name__}")
    where = _key_lines(text)
    category: Category | None = None
    windows: list[LengthWindow] = []
    for key in sorted(doc, key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k)):
        line = where.get((key, ""), 1)
        entry = doc[key]
        if not key.isdigit() or float(key) not in starts:
            out.add(path, line, "a window start must be one of the trace CSV's", key)
            continue
        if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
            out.add(path, line, "expected {field: \"{value: probability, ...}\"}", key)
            continue
        pmfs: dict[str, Pmf] = {}
        for name, literal in entry.items():
            pmf, why = parse_pmf(literal, name)
            if pmf is None:
                out.add(path, where.get((key, name), line), f"window {key} {name}: {why}",
                        literal)
            else:
                pmfs[name] = pmf
        if len(pmfs) != len(entry):
            continue
        if any(not p.values for p in pmfs.values()):
            continue  # ServeGen skips a window with an empty PMF: the previous one holds
        kind: Category = ("multimodal" if "image_count" in pmfs else
                          "reason" if "reason_ratio" in pmfs else "language")
        category = category or kind
        want = set(FIELDS[category])
        if set(pmfs) != want:
            missing, extra = sorted(want - set(pmfs)), sorted(set(pmfs) - want)
            out.add(path, line, f"window {key}: a {category} dataset has fields "
                    f"{', '.join(FIELDS[category])}"
                    + (f"; missing {', '.join(missing)}" if missing else "")
                    + (f"; unknown {', '.join(extra)}" if extra else ""))
            continue
        windows.append(LengthWindow(start_s=float(key), fields=pmfs))
    out.raise_any()
    return category or "language", windows


def read_servegen(trace_csv: Path | str, *, provenance: dict[str, Any] | None = None,
                  model: str | None = None) -> TraceModel:
    """The :class:`TraceModel` of one ServeGen client: ``trace_csv`` (``chunk-N-trace.csv``)
    and the ``chunk-N-dataset.json`` beside it.

    A malformed row raises :class:`~llmtraces.errors.InvalidTraceError` naming the file and
    line; a missing dataset file raises :class:`~llmtraces.errors.NoSuchFileError` naming it.
    ``provenance`` (the registry's ``source``, ``trace``, ``licence``, ``citation``) replaces
    the defaults in the model's ``fitted_from``. ``model`` (written to the ``model``
    column) defaults to the folder name in ServeGen's ``data/<category>/<model>/`` layout.
    """
    path = Path(trace_csv)
    if not path.is_file():
        raise NoSuchFileError(f"{path}: no such file; expected a ServeGen chunk-N-trace.csv")
    dataset = dataset_path(path)
    if not dataset.is_file():
        raise NoSuchFileError(f"{dataset}: no such file; the ServeGen trace {path.name} needs "
                              f"its length PMFs in {dataset.name} beside it")
    out = Problems()
    windows, step = read_trace_csv(path, out)
    category, lengths = read_dataset_json(dataset, {w.start_s for w in windows}, out)
    for w in windows:
        if w.law is not None and (not lengths or lengths[0].start_s > w.start_s):
            raise InvalidTraceError(f"{dataset}: no length PMFs at or before window "
                                    f"{w.start_s:g} s, which has requests ({w.rate:g}/s) in "
                                    f"{path.name}")
    parent = path.parent
    if model is None and parent.parent.name == category:
        model = parent.name
    fitted_from: dict[str, Any] = {
        "source": None, "trace": path.name[: -len("-trace.csv")], "format": "servegen",
        "native_file": path.name, "native_sha256": compute(path)["sha256"],
        "dataset_file": dataset.name, "dataset_sha256": compute(dataset)["sha256"],
        "category": category, "licence": LICENCE, "citation": CITATION,
    }
    fitted_from.update(provenance or {})
    return TraceModel(
        method=dict(METHOD), window_s=step, span_s=step * len(windows), gap_floor_s=0.0,
        rows=sum(round(w.rate * step) for w in windows if w.law is not None), failed=0,
        model=model, service=category, windows=[], fitted_from=fitted_from,
        servegen=ServeGenWorkload(category=category, window_s=step, windows=windows,
                                  lengths=lengths))


__all__ = ["dataset_path", "parse_pmf", "read_servegen"]
