"""What a release check found: each failing file and why, in lines or as JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import ReleaseError


@dataclass
class Finding:
    """One problem: the file (a name in the release) and what is wrong with it."""

    file: str
    problem: str


@dataclass
class VerifyResult:
    """What ``verify`` found: the problems, and how many files were checked."""

    folder: str
    checked: int = 0
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem was found."""
        return not self.findings

    def fail(self, file: str, problem: str) -> None:
        """Record a problem with ``file``."""
        self.findings.append(Finding(file, problem))

    def lines(self) -> list[str]:
        """One line per problem and note, then a summary."""
        out = [f"{self.folder}/{f.file}: {f.problem}" for f in self.findings]
        out += [f"note: {n}" for n in self.notes]
        bad = sorted({f.file for f in self.findings})
        out.append(f"{self.folder}: {self.checked} files checked, all good" if self.ok else
                   f"{self.folder}: FAILED: {len(bad)} of {self.checked} files: "
                   + ", ".join(bad))
        return out

    def as_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data (``--json``)."""
        return {"folder": self.folder, "ok": self.ok, "checked": self.checked,
                "failed_files": sorted({f.file for f in self.findings}),
                "problems": [{"file": f.file, "problem": f.problem} for f in self.findings],
                "notes": self.notes}

    def raise_if_failed(self) -> None:
        """A :class:`ReleaseError` naming the first problem and every failing file."""
        if not self.ok:
            first = self.findings[0]
            bad = sorted({f.file for f in self.findings})
            raise ReleaseError(f"{self.folder}/{first.file}: {first.problem} (release check "
                               f"failed for: {', '.join(bad)})")
