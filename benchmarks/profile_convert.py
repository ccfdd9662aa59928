"""Where the time of `llmtraces convert FILE --to parquet` goes, phase by phase.

Run by hand, from the repository root, on an input made by benchmarks/convert.py (``--keep``):

    python benchmarks/profile_convert.py /tmp/inputs/burstgpt-1429737-0.csv
    python benchmarks/profile_convert.py FILE --cprofile 25    # also the top 25 functions

Each phase is a fresh process, so the differences between phases are what each step adds
(median of ``--repeat`` runs), in wall seconds and in CPU seconds (all threads; robust to
other work on the machine):

* ``start``: the CLI converting a one-row copy of the file: interpreter, imports, registry,
  identification, metadata and an empty Parquet write: the fixed cost of any conversion.
* ``parse``: pyarrow's CSV reader alone, every column as strings, as ``stream_csv`` runs it
  (timed inside the process, after its imports).
* ``read``: the format's reader and the checks (``scan``), the rows dropped: parse + validate
  + the input's sha256 (hash thread), timed inside the process, after its imports.
* ``convert``: the whole CLI command (read + Parquet encode in the writer thread + commit).

The in-process phases set up the process as the ``convert`` command does (no pandas probe,
jemalloc). With ``--cprofile N`` the ``read`` phase is also run under cProfile (main thread
only; the Parquet encode runs in its own thread and is not in it) and its top functions
printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from convert import child_env  # benchmarks/convert.py: bytecode cached, as when installed

LLMTRACES = Path(sys.executable).parent / "llmtraces"

#: What the ``convert`` command does to its process before it reads anything.
SETUP = r"""
from llmtraces.pipeline.convert import skip_pandas_probe, use_jemalloc
skip_pandas_probe()
use_jemalloc()
"""

PARSE = SETUP + r"""
import sys
from pathlib import Path
from llmtraces.report import Report
from llmtraces.text import ReadContext
from llmtraces.text.csv import split_header, stream_csv
from llmtraces.text import read_first_line
import time
path = Path(sys.argv[1])
t0, c0 = time.perf_counter(), time.process_time()
ctx = ReadContext(path, Report(), label=str(path))
rows = sum(b.num_rows for b in stream_csv(ctx, split_header(read_first_line(path))))
print(time.perf_counter() - t0, time.process_time() - c0)
"""

READ = SETUP + r"""
import sys
from collections import deque
from pathlib import Path
from llmtraces.pipeline.scan import identify, scan
from llmtraces.report import Report
import time
t0, c0 = time.perf_counter(), time.process_time()
path, report = Path(sys.argv[1]), Report()
stream = scan(identify(path, report), report)
if len(sys.argv) > 2:
    import cProfile, pstats
    prof = cProfile.Profile()
    prof.enable()
deque(stream.batches, maxlen=0)
print(time.perf_counter() - t0, time.process_time() - c0)
if len(sys.argv) > 2:
    prof.disable()
    pstats.Stats(prof).sort_stats("cumulative").print_stats(int(sys.argv[2]))
"""


def timed(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds the child prints (its own timing), else those of the whole child
    (CPU: user + sys of all its threads)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, stdout=out, env=child_env())
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status):
            raise SystemExit(f"{argv[:3]} failed")
        out.seek(0)
        printed = out.read().decode().split()
    if printed:
        return float(printed[-2]), float(printed[-1])
    return wall, usage.ru_utime + usage.ru_stime


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
        walls: dict[str, list[float]] = {k: [] for k in phases}
        cpus: dict[str, list[float]] = {k: [] for k in phases}
        for _ in range(a.repeat):
            for name, argv in phases.items():
                wall, cpu = timed(argv)
                walls[name].append(wall)
                cpus[name].append(cpu)
                out.unlink(missing_ok=True)
        med = {k: statistics.median(v) for k, v in walls.items()}
        cpu = {k: statistics.median(v) for k, v in cpus.items()}
        print(f"{a.csv.name}, median of {a.repeat} (wall s, CPU s):")
        for name in phases:
            print(f"  {name:<8} {med[name]:6.2f} {cpu[name]:6.2f}")
        steps = [("start-up and fixed costs", "start", ()), ("CSV parse", "parse", ()),
                 ("validate + hash (reader, checks)", "read", ("parse",)),
                 ("encode + commit", "convert", ("start", "read"))]
        for label, key, minus in steps:
            w = med[key] - sum(med[m] for m in minus)
            c = cpu[key] - sum(cpu[m] for m in minus)
            print(f"  {label:<34} {w:6.2f} {c:6.2f}")
        print("  (encode + commit: wall not overlapped with the read; CPU: the writer thread)")
        if a.cprofile:
            subprocess.run([py, "-c", READ, str(a.csv), str(a.cprofile)], check=True,
                           env=child_env())


if __name__ == "__main__":
    main()
