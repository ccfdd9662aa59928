#!/usr/bin/env python3
"""``llmtraces stats`` on a large trace: wall time and peak memory of one run.

The input is a BurstGPT_3-shaped CSV from ``make_burstgpt_like.py --v3`` (Gamma gaps,
heavy-tailed lengths, 2 % failures, 5 % of rows in sessions), converted once to unified
Parquet; ``stats`` then runs in a fresh process, so the peak RSS is its own.

usage: stats.py [--rows N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUN = """
import json, resource, sys, time
t0 = time.perf_counter()
import llmtraces
s = llmtraces.stats(sys.argv[1])
print(json.dumps({"s": time.perf_counter() - t0, "rows": s.size.rows,
                  "windows": len(s.arrivals.windows),
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_429_737)
    ap.add_argument("--keep", type=Path, help="Folder to keep the inputs in.")
    args = ap.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="llmtraces-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    csv, parquet = folder / f"burstgpt_{args.rows}.csv", folder / f"burstgpt_{args.rows}.parquet"
    if not parquet.exists():
        subprocess.run([sys.executable, str(HERE / "make_burstgpt_like.py"), str(csv), "--rows",
                        str(args.rows), "--v3"], check=True)
        from llmtraces import convert_file  # lazy: only when the input is made
        convert_file(csv, parquet)
    done = subprocess.run([sys.executable, "-c", RUN, str(parquet)], check=True,
                          capture_output=True, text=True)
    result = json.loads(done.stdout)
    print(f"rows {result['rows']:,}  Gamma windows {result['windows']:,}  "
          f"{result['s']:.1f} s  peak {result['peak_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
