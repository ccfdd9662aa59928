"""Start-up time of the ``llmtraces`` command beside bare ``click`` and ``click`` + ``pydantic``
imports (run by hand; see benchmarks/README.md).

Each command runs ``--runs`` times in a fresh interpreter, interleaved so that a busy moment
of the machine hits every command alike; the table gives the median and the fastest wall time
and, for each llmtraces command, its median minus the median of the baseline it should be
close to (``--version``/``--help``: click alone; ``list``/``info``: click and pydantic).

    python benchmarks/cli_startup.py              # 15 runs each
    python benchmarks/cli_startup.py --runs 31
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

#: What the ``llmtraces`` console script runs (``[project.scripts]`` in pyproject.toml).
_CLI = "import sys; from llmtraces.cli import main; sys.exit(main())"

#: label -> (argv after the interpreter, label of the baseline it is compared with)
COMMANDS: dict[str, tuple[list[str], str | None]] = {
    'python -c "import click"': (["-c", "import click"], None),
    'python -c "import click, pydantic"': (["-c", "import click, pydantic"], None),
    # pydantic's top level is lazy: this is what a first model really costs.
    'python -c "import click; from pydantic import BaseModel"': (
        ["-c", "import click; from pydantic import BaseModel"], None),
    "llmtraces --version": (["-c", _CLI, "--version"], 'python -c "import click"'),
    "llmtraces --help": (["-c", _CLI, "--help"], 'python -c "import click"'),
    "llmtraces list": (["-c", _CLI, "list"], 'python -c "import click, pydantic"'),
    "llmtraces info azure-llm-2023": (["-c", _CLI, "info", "azure-llm-2023"],
                                      'python -c "import click, pydantic"'),
}


def run_once(argv: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one fresh interpreter running ``argv``; fails loudly if it fails."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *argv], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: "
                         f"{done.stderr.decode(errors='replace').strip()}")
    return elapsed


def measure(runs: int, env: dict[str, str]) -> dict[str, list[float]]:
    """Every command ``runs`` times, interleaved, after one unmeasured warm-up run each."""
    times: dict[str, list[float]] = {label: [] for label in COMMANDS}
    for argv, _ in COMMANDS.values():
        run_once(argv, env)  # warm the page cache and write any .pyc files
    for _ in range(runs):
        for label, (argv, _) in COMMANDS.items():
            times[label].append(run_once(argv, env))
    return times


def table(times: dict[str, list[float]]) -> str:
    """A Markdown table: median, fastest, and the median's excess over its baseline."""
    medians = {label: statistics.median(t) for label, t in times.items()}
    lines = ["| command | median s | fastest s | over baseline s |", "|---|---:|---:|---:|"]
    for label, (_, base) in COMMANDS.items():
        over = f"{medians[label] - medians[base]:+.3f}" if base else ""
        lines.append(f"| `{label}` | {medians[label]:.3f} | {min(times[label]):.3f} | {over} |")
    return "\n".join(lines)


def main() -> None:
    """Parse the options, time every command, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="Fresh processes per command.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        # An empty cache home: `info` reports nothing fetched, whatever this machine holds.
        env = {**os.environ, "LLMTRACES_HOME": home, "COLUMNS": "100"}
        print(f"Python {sys.version.split()[0]}, {args.runs} runs each, {os.cpu_count()} "
              "cores\n")
        print(table(measure(args.runs, env)))


if __name__ == "__main__":
    main()
