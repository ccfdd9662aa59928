"""Kavier input CSV with token id lists -> unified Parquet: wall time and peak RSS.

Run by hand (never by the test suite), from the repository root:

    python benchmarks/kavier_lists.py                       # 20,000 rows, ~2,000 ids per row
    python benchmarks/kavier_lists.py --rows 5000 --ids 10000
    python benchmarks/kavier_lists.py --parquet             # the same requests as Kavier Parquet

The input is a Kavier input CSV in the Marconi-Kavier layout (``session_id,turn_id,ts,
num_input_tokens,num_output_tokens,input_tokens,output_tokens``, token lists as ``json.dumps``
text in quoted cells), written once into a temporary folder (or ``--keep DIR``). Two runs, each
in a fresh process so its peak RSS (``ru_maxrss``) is its own: the reader alone (every batch
read and dropped) and ``convert_file`` (read, check, write zstd Parquet). ``--parquet`` reads
the same requests from a Kavier Parquet file instead, written as pandas writes one (token lists
as ``large_string`` JSON text, one row group for the whole file).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import resource, sys, time
from collections import deque
src, dst, how = sys.argv[1:4]
t0 = time.perf_counter()
if how == "read":
    from llmtraces.report import Report
    from llmtraces.formats import get_format
    from llmtraces.text import ReadContext
    report = Report()
    fmt = get_format("kavier-parquet" if src.endswith(".parquet") else "kavier-csv")
    deque(fmt.read(ReadContext(__import__("pathlib").Path(src), report)), maxlen=0)
    assert report.errors == 0, report.lines()
else:
    from llmtraces.pipeline.convert import convert_file
    convert_file(src, dst)
print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def make_kavier_like(path: Path, rows: int, ids: int, seed: int = 0) -> None:
    """A Kavier input CSV as pandas or Python's ``csv`` module writes one (quoted only where
    needed): ``rows`` requests, inputs of about ``ids`` Llama-2-sized token ids (0..31999),
    outputs up to a fifth as long, ``ts`` as Python float repr."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(["session_id", "turn_id", "ts", "num_input_tokens", "num_output_tokens",
                      "input_tokens", "output_tokens"])
        ts = 0.0
        for i in range(rows):
            ts += rng.expovariate(20.0)
            n_in = rng.randint(ids * 9 // 10, ids * 11 // 10)
            n_out = rng.randint(1, max(1, ids // 5))
            ins = [1] + [rng.randrange(32000) for _ in range(n_in - 1)]
            outs = [1] + [rng.randrange(32000) for _ in range(n_out - 1)]
            out.writerow([i // 4, i % 4, repr(ts), n_in, n_out, json.dumps(ins),
                          json.dumps(outs)])


TO_PARQUET = r"""
import sys
import pyarrow as pa, pyarrow.csv as pcsv, pyarrow.parquet as pq
text = {c: pa.large_string() for c in ("input_tokens", "output_tokens")}
table = pcsv.read_csv(sys.argv[1], convert_options=pcsv.ConvertOptions(column_types=text))
pq.write_table(table, sys.argv[2], row_group_size=table.num_rows)
"""


def to_parquet(csv_path: Path, dest: Path) -> None:
    """The CSV's requests as a Kavier Parquet file: one row group, like pandas' to_parquet.

    In a child process: Linux keeps a process's peak RSS across exec, so a parent that held
    the whole table would inflate every later child's ``ru_maxrss``.
    """
    subprocess.run([sys.executable, "-c", TO_PARQUET, str(csv_path), str(dest)], check=True)


def run(src: Path, how: str) -> tuple[float, float]:
    """Wall seconds and peak MiB of one child run."""
    out = subprocess.run([sys.executable, "-c", CHILD, str(src), str(src) + ".out.parquet", how],
                         check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), int(out[1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--ids", type=int, default=2_000)
    ap.add_argument("--keep", type=Path, help="folder for the input (kept, reused if present)")
    ap.add_argument("--parquet", action="store_true", help="read a Kavier Parquet file")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        src = folder / f"kavier_{args.rows}x{args.ids}.csv"
        if not src.exists():
            t0 = time.perf_counter()
            make_kavier_like(src, args.rows, args.ids)
            print(f"wrote {src} ({src.stat().st_size / 2**20:.0f} MiB) in "
                  f"{time.perf_counter() - t0:.1f} s")
        if args.parquet:
            pq_src = src.with_suffix(".parquet")
            if not pq_src.exists():
                to_parquet(src, pq_src)
            src = pq_src
        print("| run | rows | input MiB | s | rows/s | peak MiB |")
        print("|---|---:|---:|---:|---:|---:|")
        for how in ("read", "convert"):
            seconds, peak = run(src, how)
            print(f"| {how} | {args.rows:,} | {src.stat().st_size / 2**20:.0f} | {seconds:.2f} "
                  f"| {args.rows / seconds:,.0f} | {peak:.0f} |")


if __name__ == "__main__":
    main()
