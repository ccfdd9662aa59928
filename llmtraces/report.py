"""Validation findings: one :class:`Problem` per bad value, with file, line, column and value.

Readers and validators append to a :class:`Report`; the CLI prints it as lines or JSON.
A report keeps the first :data:`KEEP_PER_CODE` problems of each kind and counts the rest,
so a file with millions of bad rows still gives a short, exact answer. Kept problems are in
file order (a file's own problems first, then line by line), whatever order the checks ran in.
"""

from __future__ import annotations

import json
from bisect import insort
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Level = Literal["error", "warning"]
KEEP_PER_CODE = 20


@dataclass(frozen=True)
class Problem:
    """One finding. ``line`` is the 1-based physical line (or record) in ``file``."""

    level: Level
    code: str
    file: str
    message: str
    line: int | None = None
    column: str | None = None
    value: str | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        col = f" {self.column}:" if self.column else ""
        got = f" (got {self.value!r})" if self.value is not None else ""
        return f"{where}: {self.level}:{col} {self.message}{got}"


@dataclass
class Report:
    """Problems found in one or more files, capped per code, with exact totals."""

    problems: list[Problem] = field(default_factory=list)
    counts: Counter[tuple[Level, str]] = field(default_factory=Counter)
    checked: list[str] = field(default_factory=list)
    #: Things the user must be told that are not problems (e.g. licence restrictions).
    notices: list[str] = field(default_factory=list)
    #: Files checked that could not be read at all (e.g. a format not recognised).
    unreadable: list[str] = field(default_factory=list)
    #: Each file's rank, in the order its first problem came.
    _files: dict[str, int] = field(default_factory=dict, init=False, repr=False,
                                   compare=False)

    def _position(self, problem: Problem) -> tuple[int, int]:
        """Where ``problem`` sorts: its file's rank, then its line (0, first: the whole file)."""
        return self._files.setdefault(problem.file, len(self._files)), problem.line or 0

    def add(self, problem: Problem) -> None:
        """Count ``problem``, and keep it in file order if it is among the first of its kind."""
        key = (problem.level, problem.code)
        self.counts[key] += 1
        if self.counts[key] <= KEEP_PER_CODE:
            insort(self.problems, problem, key=self._position)

    def add_problem(self, level: Level, code: str, file: str, message: str, **kw: Any) -> None:
        self.add(Problem(level, code, file, message, **kw))

    def error(self, code: str, file: str, message: str, **kw: Any) -> None:
        self.add(Problem("error", code, file, message, **kw))

    def warning(self, code: str, file: str, message: str, **kw: Any) -> None:
        self.add(Problem("warning", code, file, message, **kw))

    def total(self, level: Level) -> int:
        return sum(n for (lvl, _), n in self.counts.items() if lvl == level)

    @property
    def errors(self) -> int:
        return self.total("error")

    @property
    def warnings(self) -> int:
        return self.total("warning")

    def failed(self, strict: bool = False) -> bool:
        """True when there are errors, or any problem at all under ``strict``."""
        return self.errors > 0 or (strict and self.warnings > 0)

    def lines(self) -> list[str]:
        """Human-readable lines: each kept problem, then a note for each capped code."""
        out = [str(p) for p in self.problems]
        for (level, code), n in sorted(self.counts.items()):
            if n > KEEP_PER_CODE:
                out.append(f"... and {n - KEEP_PER_CODE:,} more {level}s of kind {code}")
        return out

    def summary(self) -> str:
        """``2 file(s) checked, 1 unreadable: 3 error(s), 0 warning(s)``."""
        unreadable = f", {len(self.unreadable)} unreadable" if self.unreadable else ""
        return (f"{len(self.checked)} file(s) checked{unreadable}: {self.errors:,} error(s), "
                f"{self.warnings:,} warning(s)")

    def to_json(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "notices": self.notices,
            "unreadable": self.unreadable,
            "errors": self.errors,
            "warnings": self.warnings,
            "counts": [{"level": lvl, "code": code, "count": n}
                       for (lvl, code), n in sorted(self.counts.items())],
            "problems": [asdict(p) for p in self.problems],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)
