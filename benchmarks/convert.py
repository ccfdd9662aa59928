"""Native CSV -> unified Parquet: `llmtraces convert` beside DuckDB, wall time and peak RSS.

Run by hand (never by the test suite), from the repository root:

    python benchmarks/convert.py                       # the issue-15 set, median of 3 each
    python benchmarks/convert.py --cases burstgpt --repeat 5
    python benchmarks/convert.py --azure-rows 2500000,10000000 --markdown table.md
    python benchmarks/convert.py --keep /tmp/convert-inputs   # reuse inputs between runs

Inputs are made here, nothing outside the repository is read: BurstGPT-shaped CSVs from
benchmarks/make_burstgpt_like.py (1,429,737 rows in BurstGPT_1's 6 columns, 5,344,021 in
BurstGPT_3's 8) and Azure-2024-shaped CSVs from :func:`make_azure_2024_like`
(``2024-05-12 00:00:00.001163+00:00``, fraction left out when zero). Each converter is a whole
process, started as a user starts it: the ``llmtraces convert FILE --to parquet -o OUT -q``
console script (start-up, imports, parse, checks, encode) and ``python -c`` running DuckDB's
``COPY (SELECT * FROM read_csv(...)) TO ... (FORMAT PARQUET)``. The two run alternately, so
they share the machine's state; a first, untimed round warms the page cache and the bytecode
cache (kept under the temporary folder, as an installed package keeps its ``.pyc``). Wall and
CPU time are the medians of ``--repeat`` runs; peak RSS is the child's own ``ru_maxrss``
(``os.wait4``), the largest over the runs. Run with ``PYTHONPATH=<other checkout>`` to time
another version of llmtraces (the children inherit it), or add ``--baseline <other checkout>``
to time it in the same run, as a third converter. Targets (issue 15):
llmtraces <= 1.0x DuckDB's wall time and peak RSS <= 256 MiB at every size.
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

GENERATOR = Path(__file__).resolve().parent / "make_burstgpt_like.py"
LLMTRACES = Path(sys.executable).parent / "llmtraces"

DUCKDB = r"""
import sys, duckdb
src, dst = sys.argv[1:3]
con = duckdb.connect()
con.sql("SET enable_progress_bar = false")
con.sql(f"COPY (SELECT * FROM read_csv('{src}')) TO '{dst}' (FORMAT PARQUET)")
"""


def make_azure_2024_like(path: Path, rows: int, seed: int = 0) -> None:
    """An Azure LLM 2024-layout CSV: ``+00:00``, microseconds left out when zero, LF.

    About 45 requests/s (conv_1week: 27.3M rows in a week); 1 row in 1,000 falls on a whole
    second so every block mixes the two spellings, as the real files do.
    """
    rng = random.Random(seed)
    t_us, base = 9_930, 1715472000  # 2024-05-12 00:00:00 UTC
    stamps: dict[int, str] = {}
    with path.open("w", newline="") as fh:
        fh.write("TIMESTAMP,ContextTokens,GeneratedTokens\n")
        chunk: list[str] = []
        for _ in range(rows):
            t_us += int(rng.expovariate(1 / 22_000))
            if rng.random() < 0.001 and t_us % 1_000_000:
                t_us += 1_000_000 - t_us % 1_000_000  # on to the next whole second
            s, us = divmod(t_us, 1_000_000)
            stamp = stamps.get(s)
            if stamp is None:
                stamps.clear()  # one second at a time: the cache stays tiny
                stamp = stamps[s] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(base + s))
            frac = f".{us:06d}" if us else ""
            inputs = min(int(rng.lognormvariate(6.5, 1.2)) + 1, 30_000)
            chunk.append(f"{stamp}{frac}+00:00,{inputs},{max(1, int(rng.expovariate(1 / 250)))}\n")
            if len(chunk) == 100_000:
                fh.write("".join(chunk))
                chunk = []
        fh.write("".join(chunk))


@dataclass(frozen=True)
class Case:
    """One input: its name, shape and size."""

    name: str
    shape: str  # burstgpt, burstgpt-v3, azure-2024
    rows: int

    def make(self, folder: Path, seed: int) -> Path:
        """The input CSV in ``folder``, written unless it is already there."""
        path = folder / f"{self.shape}-{self.rows}-{seed}.csv"
        if path.exists():
            return path
        part = path.with_suffix(".part")
        if self.shape == "azure-2024":
            make_azure_2024_like(part, self.rows, seed)
        else:
            subprocess.run([sys.executable, str(GENERATOR), str(part), "--rows", str(self.rows),
                            "--seed", str(seed)] + (["--v3"] if self.shape == "burstgpt-v3"
                                                    else []), check=True)
        part.rename(path)
        return path


def child_env() -> dict[str, str]:
    """The children's environment: bytecode cached (in a folder outside the repository), as
    in an installed package, even where the shell sets PYTHONDONTWRITEBYTECODE."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.setdefault("PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir()) / "llmtraces-pyc"))
    return env


def run_once(argv: list[str], env: dict[str, str] | None = None
             ) -> tuple[float, float, int, str]:
    """Wall seconds, CPU seconds, peak RSS (KiB) and the last stderr line of one child."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err,
                                env={**child_env(), **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        last = (err.read().decode(errors="replace").strip().splitlines() or [""])[-1]
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, usage.ru_maxrss, last if proc.returncode else ""


@dataclass
class Result:
    """Median wall time and largest peak RSS of one converter on one case."""

    walls: list[float]
    cpus: list[float]
    peak_kib: int
    error: str = ""

    @property
    def wall(self) -> float:
        return statistics.median(self.walls) if self.walls else float("nan")

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpus) if self.cpus else float("nan")


def measure(src: Path, repeat: int, converters: list[str], llmtraces: list[str],
            baseline: Path | None = None) -> dict[str, Result]:
    """Run each converter ``repeat`` times on ``src``, alternating between them; ``baseline``
    is the checkout the ``baseline`` converter (llmtraces again) imports from."""
    out = {c: Result([], [], 0) for c in converters}
    for k in range(repeat + 1):  # the first round warms the page and bytecode caches
        for conv in converters:
            dst = src.with_name(f"{src.stem}.{conv}.parquet")
            argv = ([*llmtraces, "convert", str(src), "--to", "parquet", "-o", str(dst),
                     "-q"] if conv != "duckdb" else [sys.executable, "-c", DUCKDB,
                                                     str(src), str(dst)])
            env = {"PYTHONPATH": str(baseline)} if conv == "baseline" and baseline else {}
            wall, cpu, kib, error = run_once(argv, env)
            dst.unlink(missing_ok=True)
            res = out[conv]
            res.error = res.error or error
            if not error and k:
                res.walls.append(wall)
                res.cpus.append(cpu)
                res.peak_kib = max(res.peak_kib, kib)
    return out


def table(rows: list[tuple[Case, Path, dict[str, Result]]], repeat: int) -> str:
    """The results as a Markdown table: wall s / CPU s / peak MiB per converter, and each
    llmtraces run's wall time over DuckDB's."""
    names = list(rows[0][2]) if rows else []
    titles = {"llmtraces": "llmtraces", "baseline": "baseline", "duckdb": "DuckDB"}
    ratios = [n for n in names if n != "duckdb"] if "duckdb" in names else []
    head = ["shape", "rows", "CSV MiB"] + [f"{titles[n]} wall / CPU / MiB" for n in names]
    head += [f"{titles[n]} / DuckDB" for n in ratios]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|---:|" + "---|" * len(names)
             + "---:|" * len(ratios)]
    for case, src, res in rows:
        cells = [case.shape, f"{case.rows:,}", f"{src.stat().st_size / 2**20:,.0f}"]
        for n in names:
            r = res[n]
            cells.append("-" if r.error else
                         f"{r.wall:.2f} / {r.cpu:.2f} / {r.peak_kib / 1024:,.0f}")
        duck = res.get("duckdb")
        for n in ratios:
            ok = duck is not None and not duck.error and not res[n].error
            cells.append(f"{res[n].wall / duck.wall:.2f}x" if ok and duck else "-")
        lines.append("| " + " | ".join(cells) + " |")
    errors = [f"{c.name} {k}: {r.error}" for c, _, res in rows for k, r in res.items()
              if r.error]
    note = (f"\nWall and CPU (user + sys) time: median of {repeat} runs after a warm-up run; "
            "peak RSS: the largest of them.")
    return "\n".join(lines + ([""] + errors if errors else [])) + note


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="burstgpt,burstgpt-v3,azure-2024",
                    help="comma-separated shapes to run (default: all three)")
    ap.add_argument("--burstgpt-rows", type=int, default=1_429_737)
    ap.add_argument("--v3-rows", type=int, default=5_344_021)
    ap.add_argument("--azure-rows", default="2500000,10000000",
                    help="comma-separated sizes of the Azure 2024 shape (RSS vs size)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-duckdb", action="store_true", help="time llmtraces alone")
    ap.add_argument("--llmtraces", default=str(LLMTRACES),
                    help="the command that runs llmtraces (e.g. a wrapper of another checkout)")
    ap.add_argument("--baseline", type=Path, metavar="CHECKOUT",
                    help="also time the llmtraces of this checkout (its PYTHONPATH) in the "
                         "same run, e.g. a copy of the last commit")
    ap.add_argument("--keep", type=Path, help="make (or reuse) the inputs in this folder")
    ap.add_argument("--markdown", type=Path, help="also write the table to this file")
    a = ap.parse_args()
    wanted = a.cases.split(",")
    cases = [Case("burstgpt", "burstgpt", a.burstgpt_rows),
             Case("burstgpt-v3", "burstgpt-v3", a.v3_rows)]
    cases += [Case(f"azure-2024-{n}", "azure-2024", int(n)) for n in a.azure_rows.split(",")]
    cases = [c for c in cases if c.shape in wanted]
    converters = (["llmtraces"] + (["baseline"] if a.baseline else [])
                  + ([] if a.no_duckdb else ["duckdb"]))
    folder = a.keep or Path(tempfile.mkdtemp(prefix="llmtraces-convert-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        done = []
        for case in cases:
            src = case.make(folder, a.seed)
            res = measure(src, a.repeat, converters, shlex.split(a.llmtraces), a.baseline)
            done.append((case, src, res))
            summary = ", ".join(f"{k} {r.wall:.2f} s {r.peak_kib / 1024:.0f} MiB{r.error}"
                                for k, r in res.items())
            print(f"{case.name}: {summary}", file=sys.stderr, flush=True)
        text = table(done, a.repeat)
        print(text)
        if a.markdown:
            a.markdown.write_text(text + "\n")
    finally:
        if a.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
