"""Speed and peak memory of converting an Azure-format CSV, by size, against a pandas baseline.

Run by hand (not by the test suite):

    python benchmarks/convert_azure.py 100000 1000000 10000000

For each row count it writes a synthetic file in the exact Azure 2023 layout (7 fractional
digits, CRLF, no final newline), then converts it in a fresh process with
``llmtraces.convert_file`` and, as the baseline a user would write by hand, with
``pandas.read_csv`` + ``to_parquet``. It prints rows/s and the peak RSS of each process: the
claim to check is that llmtraces' peak memory stays flat as the file grows.
"""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import resource, sys, time
src, dst, how = sys.argv[1], sys.argv[2], sys.argv[3]
t0 = time.perf_counter()
if how == "llmtraces":
    from llmtraces.convert import convert_file
    convert_file(src, dst)
else:
    import pandas as pd
    df = pd.read_csv(src)
    df["TIMESTAMP"] = pd.to_datetime(df["TIMESTAMP"])
    df.to_parquet(dst)
print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """An Azure 2023-layout CSV of ``rows`` requests at ~2.6 req/s, streamed to disk."""
    rng = random.Random(seed)
    t_us = 0
    base = 1700158623  # 2023-11-16 18:17:03 UTC
    with path.open("w", newline="") as fh:
        fh.write("TIMESTAMP,ContextTokens,GeneratedTokens")
        chunk = []
        for _ in range(rows):
            t_us += int(rng.expovariate(1 / 385_000))
            s, us = divmod(t_us, 1_000_000)
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(base + s))
            chunk.append(f"\r\n{stamp}.{us:06d}0,{rng.randint(3, 7437)},{rng.randint(6, 1899)}")
            if len(chunk) == 100_000:
                fh.write("".join(chunk))
                chunk = []
        fh.write("".join(chunk))


def run(src: Path, how: str) -> tuple[float, float]:
    dst = src.with_suffix(f".{how}.parquet")
    out = subprocess.run([sys.executable, "-c", CHILD, str(src), str(dst), how],
                         check=True, capture_output=True, text=True).stdout.split()
    dst.unlink()
    return float(out[0]), int(out[1]) / 1024  # seconds, MiB (ru_maxrss is KiB on Linux)


def main(sizes: list[int]) -> None:
    print(f"{'rows':>11} {'CSV MiB':>8} | {'llmtraces s':>11} {'rows/s':>11} {'peak MiB':>9} |"
          f" {'pandas s':>9} {'peak MiB':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for rows in sizes:
            src = Path(tmp) / f"azure_{rows}.csv"
            generate(src, rows)
            mib = src.stat().st_size / 2**20
            lt_s, lt_mem = run(src, "llmtraces")
            try:
                pd_s, pd_mem = run(src, "pandas")
                base = f"{pd_s:>9.2f} {pd_mem:>9.0f}"
            except subprocess.CalledProcessError:
                base = f"{'n/a':>9} {'n/a':>9}"
            print(f"{rows:>11,} {mib:>8.0f} | {lt_s:>11.2f} {rows / lt_s:>11,.0f} {lt_mem:>9.0f} |"
                  f" {base}", flush=True)
            src.unlink()


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [100_000, 1_000_000, 10_000_000])
