"""Where the time of `llmtraces convert FILE --to parquet` goes, phase by phase.

Run by hand, from the repository root, on an input made by benchmarks/convert.py (``--keep``):

    python benchmarks/profile_convert.py /tmp/inputs/burstgpt-1429737-0.csv
    python benchmarks/profile_convert.py FILE --cprofile 25    # also the top 25 functions

Each phase is a fresh process, timed from its start, so the differences between phases are
what each step adds (median of ``--repeat`` runs):

* ``start``: the CLI converting a one-row copy of the file: interpreter, imports, registry,
  identification, metadata and an empty Parquet write: the fixed cost of any conversion.
* ``parse``: pyarrow's CSV reader alone, every column as strings, as ``stream_csv`` runs it
  (timed inside the process, after its imports).
* ``read``: the format's reader and the checks (``scan``), the rows dropped: parse + validate
  (timed inside the process, after its imports).
* ``convert``: the whole CLI command (read + Parquet encode in the writer thread + commit).

With ``--cprofile N`` the ``read`` phase is also run under cProfile (main thread only; the
Parquet encode runs in its own thread and is not in it) and its top functions printed.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LLMTRACES = Path(sys.executable).parent / "llmtraces"

PARSE = r"""
import sys
from pathlib import Path
from llmtraces.report import Report
from llmtraces.text import ReadContext
from llmtraces.text.csv import split_header, stream_csv
from llmtraces.text import read_first_line
import time
path = Path(sys.argv[1])
t0 = time.perf_counter()
ctx = ReadContext(path, Report(), label=str(path))
rows = sum(b.num_rows for b in stream_csv(ctx, split_header(read_first_line(path))))
print(time.perf_counter() - t0)
"""

READ = r"""
import sys
from collections import deque
from pathlib import Path
from llmtraces.pipeline.scan import identify, scan
from llmtraces.report import Report
import time
t0 = time.perf_counter()
path, report = Path(sys.argv[1]), Report()
stream = scan(identify(path, report), report)
if len(sys.argv) > 2:
    import cProfile, pstats
    prof = cProfile.Profile()
    prof.enable()
deque(stream.batches, maxlen=0)
print(time.perf_counter() - t0)
if len(sys.argv) > 2:
    prof.disable()
    pstats.Stats(prof).sort_stats("cumulative").print_stats(int(sys.argv[2]))
"""


def timed(argv: list[str]) -> float:
    """Seconds the child prints (its own timing), else the wall time of the whole child."""
    t0 = time.perf_counter()
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout.split()
    return float(out[-1]) if out else time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cprofile", type=int, metavar="N", help="print the top N functions")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one = Path(tmp) / a.csv.name
        with a.csv.open("rb") as fh:
            one.write_bytes(fh.readline() + fh.readline())
        out = Path(tmp) / "out.parquet"
        py = sys.executable
        phases = {
            "start": [str(LLMTRACES), "convert", str(one), "-o", str(out), "-q"],
            "parse": [py, "-c", PARSE, str(a.csv)],
            "read": [py, "-c", READ, str(a.csv)],
            "convert": [str(LLMTRACES), "convert", str(a.csv), "-o", str(out), "-q"],
        }
        walls = {k: [] for k in phases}  # type: dict[str, list[float]]
        for _ in range(a.repeat):
            for name, argv in phases.items():
                walls[name].append(timed(argv))
                out.unlink(missing_ok=True)
        med = {k: statistics.median(v) for k, v in walls.items()}
        print(f"{a.csv.name}, median of {a.repeat}:")
        for name in phases:
            print(f"  {name:<8} {med[name]:6.2f} s")
        print(f"  start-up and fixed costs       {med['start']:6.2f} s")
        print(f"  CSV parse                      {med['parse']:6.2f} s")
        print(f"  validate (reader, checks)      {med['read'] - med['parse']:6.2f} s")
        rest = med["convert"] - med["start"] - med["read"]
        print(f"  encode + commit, not overlapped {rest:5.2f} s")
        if a.cprofile:
            subprocess.run([py, "-c", READ, str(a.csv), str(a.cprofile)], check=True)


if __name__ == "__main__":
    main()
