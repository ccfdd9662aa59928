"""Maintainers: the skeletons of a new source (``python -m llmtraces._scaffold ID``).

Writes the four files adding a source takes (CONTRIBUTING.md): ``registry/ID.toml``, a format
module ``llmtraces/formats/MODULE.py`` (only with ``--format``, for a format that is new),
``tests/test_ID.py`` on the shared ``check_format`` helper, and ``docs/sources/ID.md``. Every
``FILL-IN`` is a fact to fill in from the upstream; nothing existing is overwritten.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*$")

REGISTRY = '''\
# FILL-IN: the source in one line. Facts: where each pin below was read, and how sure it is.
id = "{id}"
name = "FILL-IN: the source's name"
description = """\\
FILL-IN: what one row is, who published it, over what period, what it lacks."""
homepage = "https://FILL-IN"
format = "{format}"
quirks = [
  "FILL-IN: every unit, zone, origin and oddity a loader gets wrong.",
]

[licence]
spdx = "FILL-IN"
url = "https://FILL-IN"
redistributable = false
commercial_use = false
attribution = "FILL-IN: what users must credit."

[citation]
text = "FILL-IN: the reference."
bibtex = """\\
@misc{{{bibkey},
  title = {{FILL-IN}},
}}"""

[time]
kind = "relative"
native_format = "FILL-IN: how the timestamp column is written"
resolution = "FILL-IN: e.g. 1ms"
origin = "FILL-IN: what arrival_us = 0 is"

[traces.main]
description = "FILL-IN: what this trace is, its rows and span."

[traces.main.file]
name = "FILL-IN.csv"
url = "https://FILL-IN"
sha256 = "FILL-IN: sha256 of the published file (or md5 / git_blob)"
'''

FORMAT = '''\
"""FILL-IN: the publisher and the layout, in a line (``{format}``).

Reading: FILL-IN (units, zone, origin; what is kept verbatim in ``extra``).
Writing (``--to {module}``): FILL-IN (the layout written back; byte-identical for its own files?).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from ..schema import TimeSemantics, TraceStream
from ..text import ReadContext
from . import NativeFormat, Writer


class {cls}(NativeFormat):
    """FILL-IN: one line on the layout this reader recognises."""

    name = "{format}"
    description = "FILL-IN: the header or first record, shortly"
    time = TimeSemantics(kind="relative", native_format="FILL-IN", resolution="FILL-IN",
                         origin="FILL-IN")

    def sniff(self, first_line: str) -> bool:
        """True for this format's header (or first record)."""
        raise RuntimeError("FILL-IN: recognise the header of {format}")

    def read(self, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        """Stream unified batches; report each bad value with its line to ``ctx.report``."""
        raise RuntimeError("FILL-IN: read {format} (see formats/mooncake.py for a JSONL reader, "
                          "formats/azure.py for a CSV one)")


def write(stream: TraceStream, dest: Path) -> int:
    """Write ``stream`` as {format}, atomically; return the rows written."""
    raise RuntimeError("FILL-IN: write {format} (see formats/mooncake.py)")


FORMATS = ({cls}(),)
WRITER = Writer("{module}", ".FILL-IN", "FILL-IN: what the export is, which tool reads it",
                write)
'''

TEST = '''\
"""{id}: the real sample in tests/fixtures/{id}/ (with its provenance README)."""

from __future__ import annotations

from conftest import FIXTURES
from formatcheck import check_format

SAMPLE = FIXTURES / "{id}" / "FILL-IN.csv"


def test_real_sample() -> None:
    check_format(SAMPLE, rows=0,  # FILL-IN: the sample's row count
                 reader="{format}",
                 first={{"arrival_us": 0}},  # FILL-IN: the first row's values
                 last={{"arrival_us": 0}},  # FILL-IN: the last row's values
                 roundtrip=None)  # FILL-IN: the writer that gives the file back, if any
'''

DOC = '''\
# FILL-IN: the source's name (`{id}`)

Registry entry: [`registry/{id}.toml`](../../registry/{id}.toml).
Native reader: `{format}`.

## What the data is

FILL-IN: what one row is, who published it, over what period, what it lacks.

## Files

<!-- files:start -->
<!-- files:end -->

## Time semantics and quirks

FILL-IN: units, zone, origin, and each quirk with what the converter does about it.
'''


def scaffold(source_id: str, root: Path, fmt: str | None = None) -> list[Path]:
    """Write the skeleton files of source ``source_id`` under ``root``; return their paths.

    ``fmt``: the name of a new native format (``publisher-jsonl``); without it the registry
    entry names ``auto`` and no format module is written.
    """
    if not _ID.match(source_id):
        raise ValueError(f"source id {source_id!r}: expected lower-case letters, digits, "
                         "'.', '_' or '-', starting with a letter or digit")
    module = re.sub(r"[^a-z0-9]+", "_", (fmt or source_id).removesuffix("-csv")
                    .removesuffix("-jsonl")).strip("_")
    fields = {"id": source_id, "format": fmt or "auto", "module": module.replace("_", "-"),
              "bibkey": re.sub(r"[^a-z0-9]", "", source_id),
              "cls": "".join(p.title() for p in module.split("_")) + "Format"}
    files = {root / "registry" / f"{source_id}.toml": REGISTRY,
             root / "tests" / f"test_{source_id.replace('-', '_')}.py": TEST,
             root / "docs" / "sources" / f"{source_id}.md": DOC}
    if fmt is not None:
        files[root / "llmtraces" / "formats" / f"{module}.py"] = FORMAT
    taken = [p for p in files if p.exists()]
    if taken:
        raise FileExistsError(f"would overwrite {', '.join(map(str, taken))}")
    for path, template in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**fields), encoding="utf-8")
    return list(files)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m llmtraces._scaffold", description=__doc__)
    ap.add_argument("id", help="the new source's registry id, e.g. acme-chat-2026")
    ap.add_argument("--format", help="name of a new native format, e.g. acme-jsonl")
    ap.add_argument("--root", type=Path, default=Path.cwd(), help="the repository root")
    a = ap.parse_args(argv)
    try:
        written = scaffold(a.id, a.root, a.format)
    except (ValueError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    print("next: fill every FILL-IN (CONTRIBUTING.md), add the sample to tests/fixtures/"
          f"{a.id}/, then `python -m llmtraces._generate` and `pytest`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
