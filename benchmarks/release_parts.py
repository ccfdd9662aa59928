"""A release's per-trace work on a large trace: the pinned Parquet rewrite, the content hash
and the file hashes, with wall time and peak RSS each (issue 13).

Run by hand (never by the test suite), from the repository root:

    python benchmarks/release_parts.py                 # 1M rows
    python benchmarks/release_parts.py --copies 1140   # about 10M rows

The input is the Azure 2023 code trace shipped in the package, converted and repeated
``--copies`` times (request ids and source rows renumbered) into one unified Parquet file in
a temporary folder. Each step runs in its own process, so its peak RSS (``ru_maxrss``) is its
own: the steps stream row groups and batches, so memory should not grow with the rows.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEP = """
import sys
from pathlib import Path
from llmtraces.formats.parquet import read_metadata
from llmtraces.release.content_hash import content_sha256
from llmtraces.release.layout import write_pinned
from llmtraces.release.sums import file_hashes
step, src, dest = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
if step == "rewrite":
    write_pinned(src, dest, read_metadata(src))
elif step == "content":
    content_sha256(dest)
else:
    file_hashes(dest)
"""


def make_input(path: Path, copies: int) -> int:
    """The code trace repeated ``copies`` times as one unified file; returns its rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from llmtraces.formats.parquet import read_metadata
    from llmtraces.paths import bundled_dir
    from llmtraces.pipeline.convert import convert_file
    from llmtraces.schema import METADATA_KEY

    one = path.with_name("one.parquet")
    convert_file(bundled_dir() / "azure-llm-2023" / "AzureLLMInferenceTrace_code.csv", one)
    table = pq.read_table(one)
    meta = read_metadata(one)
    with pq.ParquetWriter(path, table.schema) as writer:
        for k in range(copies):
            ids = pa.array(range(k * table.num_rows, (k + 1) * table.num_rows), pa.int64())
            part = table.set_column(table.schema.get_field_index("request_id"), "request_id",
                                    ids)
            part = part.set_column(part.schema.get_field_index("source_row"), "source_row",
                                   ids)
            writer.write_table(part.cast(table.schema))
        rows = copies * table.num_rows
        writer.add_key_value_metadata({METADATA_KEY: json.dumps({**meta, "rows": rows})})
    return rows


def run(step: str, src: Path, dest: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one step in a child process."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", STEP, step, str(src), str(dest)], check=True)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return wall, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=114, help="copies of the 8,819 rows")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src, dest = Path(tmp) / "big.parquet", Path(tmp) / "out.parquet"
        rows = make_input(src, args.copies)
        print(f"{rows:,} rows, input {src.stat().st_size:,} bytes")
        for step in ("rewrite", "content", "hashes"):
            wall, peak = run(step, src, dest)
            print(f"{step:8} {wall:6.2f} s   peak RSS so far {peak:6.0f} MiB")
        print(f"release file {dest.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
