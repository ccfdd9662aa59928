"""What every format test checks, in one call: ``check_format(path, rows=, first=, last=,
roundtrip=)`` (CONTRIBUTING.md, "Adding a source")."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from llmtraces.pipeline.convert import convert_file
from llmtraces.schema import METADATA_KEY


def check_format(path: Path, *, rows: int, reader: str | None = None,
                 first: Mapping[str, Any] | None = None, last: Mapping[str, Any] | None = None,
                 roundtrip: str | None = None) -> pa.Table:
    """Convert ``path`` to unified Parquet and check it; return the unified table.

    ``reader``: the native format the file must be recognised as. ``first`` / ``last``: the
    values some columns of the first and last rows must have. ``roundtrip``: an export format
    that must give the file back byte for byte (native -> unified -> native).
    """
    with tempfile.TemporaryDirectory() as tmp:
        unified = Path(tmp) / "unified.parquet"
        assert convert_file(path, unified)[0] == rows, f"{path}: expected {rows} rows"
        table = pq.read_table(unified)
        if reader is not None:
            meta = json.loads(pq.read_metadata(unified).metadata[METADATA_KEY.encode()])
            assert meta["native_format"] == reader, f"{path}: read as {meta['native_format']}"
        assert table.num_rows == rows
        for row, want in ((0, first), (rows - 1, last)):
            if want:
                got = table.slice(row, 1).to_pylist()[0]
                assert {k: got[k] for k in want} == dict(want), f"{path}: row {row}"
        if roundtrip is not None:
            back = Path(tmp) / ("back" + "".join(path.suffixes))
            convert_file(unified, back, to=roundtrip)
            assert back.read_bytes() == path.read_bytes(), \
                f"{path}: --to {roundtrip} does not give the file back byte for byte"
    return table
