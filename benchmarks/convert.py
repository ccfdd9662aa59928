"""Native CSV -> unified Parquet: wall time and peak RSS of llmtraces beside pandas and DuckDB.

Run by hand (never by the test suite), from the repository root:

    python benchmarks/convert.py                          # BurstGPT_1 shape, 1,429,737 rows
    python benchmarks/convert.py --v3 --rows 5344021      # BurstGPT_3 8-column shape, ~257 MB
    python benchmarks/convert.py --azure --rows 10000000  # Azure 2023 layout

The input is written by benchmarks/make_burstgpt_like.py (or, with --azure, by
:func:`make_azure_like`) into a temporary folder. Each converter runs in a fresh process so its
peak RSS (``ru_maxrss``) is its own: llmtraces ``convert_file`` (parses, validates every value,
keeps ``source_row``, writes zstd Parquet), pandas ``read_csv`` + ``to_parquet``, and DuckDB
``COPY (SELECT * FROM read_csv(...)) TO ... (FORMAT PARQUET)``. Baselines that are not
installed are reported as such. Targets (issue 3): llmtraces <= 1.0x DuckDB's wall time and
peak RSS <= 256 MB at both sizes.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GENERATOR = Path(__file__).resolve().parent / "make_burstgpt_like.py"

CHILD = r"""
import resource, sys, time
src, dst, how = sys.argv[1:4]
t0 = time.perf_counter()
if how == "llmtraces":
    from llmtraces.pipeline.convert import convert_file
    convert_file(src, dst)
elif how == "pandas":
    import pandas as pd
    pd.read_csv(src).to_parquet(dst)
else:
    import duckdb
    duckdb.sql("SET enable_progress_bar = false")
    duckdb.sql(f"COPY (SELECT * FROM read_csv('{src}')) TO '{dst}' (FORMAT PARQUET)")
print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def make_azure_like(path: Path, rows: int, seed: int = 0) -> None:
    """An Azure 2023-layout CSV (7 fractional digits, CRLF, no final newline), ~2.6 req/s."""
    rng = random.Random(seed)
    t_us, base = 0, 1700158623  # 2023-11-16 18:17:03 UTC
    with path.open("w", newline="") as fh:
        fh.write("TIMESTAMP,ContextTokens,GeneratedTokens")
        chunk: list[str] = []
        for _ in range(rows):
            t_us += int(rng.expovariate(1 / 385_000))
            s, us = divmod(t_us, 1_000_000)
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(base + s))
            chunk.append(f"\r\n{stamp}.{us:06d}0,{rng.randint(3, 7437)},{rng.randint(6, 1899)}")
            if len(chunk) == 100_000:
                fh.write("".join(chunk))
                chunk = []
        fh.write("".join(chunk))


def run(src: Path, how: str) -> str:
    """``seconds peak-MiB`` of one converter in a fresh process, or why it could not run."""
    dst = src.with_suffix(f".{how}.parquet")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(src), str(dst), how],
                          capture_output=True, text=True)
    dst.unlink(missing_ok=True)
    if proc.returncode:
        last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        return f"{'-':>8} {'-':>9}  ({last[:60]})"
    secs, kib = proc.stdout.split()[-2:]
    return f"{float(secs):>8.2f} {int(kib) / 1024:>9.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_429_737)
    ap.add_argument("--v3", action="store_true", help="8-column BurstGPT_3 layout")
    ap.add_argument("--azure", action="store_true", help="Azure 2023 layout instead")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / ("azure.csv" if a.azure else "BurstGPT_like.csv")
        if a.azure:
            make_azure_like(src, a.rows, a.seed)
        else:
            cmd = [sys.executable, str(GENERATOR), str(src), "--rows", str(a.rows),
                   "--seed", str(a.seed)] + (["--v3"] if a.v3 else [])
            subprocess.run(cmd, check=True)
        shape = "azure" if a.azure else ("burstgpt-v3" if a.v3 else "burstgpt")
        print(f"{shape}: {a.rows:,} rows, {src.stat().st_size / 2**20:.0f} MiB CSV")
        print(f"{'converter':<10} {'seconds':>8} {'peak MiB':>9}")
        for how in ("llmtraces", "pandas", "duckdb"):
            print(f"{how:<10} {run(src, how)}", flush=True)


if __name__ == "__main__":
    main()
