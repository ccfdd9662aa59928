"""Malformed unified Parquet, unwritable outputs, and debris of killed runs (issue 17:
F6-F9): one line naming the file, nothing written, nothing left behind."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import Cli
from llmtraces.atomic import atomic_path, signals_interrupt, sweep_stale
from llmtraces.pipeline.convert import convert_file


@pytest.fixture(scope="module")
def unified(code_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("u") / "u.parquet"
    convert_file(code_csv, out)
    return out


def _rewrite(src: Path, dest: Path, column: str | None = None, array: pa.Array | None = None,
             duplicate: bool = False, meta: bytes | None = None) -> Path:
    """``src`` rewritten with its file metadata kept, one thing changed."""
    table = pq.read_table(src)
    kv = {k: v for k, v in (pq.read_metadata(src).metadata or {}).items()
          if k != b"ARROW:schema"}
    if meta is not None:
        kv[b"llmtraces.trace"] = meta
    if column is not None and array is not None:
        i = table.schema.get_field_index(column)
        table = table.set_column(i, pa.field(column, array.type), array)
    if duplicate:
        table = table.append_column("input_tokens", table.column("input_tokens"))
    pq.write_table(table.replace_schema_metadata(kv), dest)
    return dest


def _tokens(unified: Path, value: object, type_: pa.DataType) -> pa.Array:
    values = pq.read_table(unified, columns=["input_tokens"]).column(0).to_pylist()
    values[3] = value
    return pa.array([float(v) if v is not None and type_ == pa.float64() else v
                     for v in values], type_)


BAD = {
    "neg": (lambda u: {"column": "input_tokens", "array": _tokens(u, -4, pa.int64())},
            ":4: error: input_tokens: must be >= 0 (got '-4')"),
    "null": (lambda u: {"column": "input_tokens", "array": _tokens(u, None, pa.int64())},
             ":4: error: input_tokens: must not be null"),
    "nan": (lambda u: {"column": "input_tokens", "array": _tokens(u, float("nan"),
                                                                  pa.float64())},
            ": error: input_tokens: type must be int64 (got 'double')"),
    "u64": (lambda u: {"column": "input_tokens", "array": _tokens(u, 2**64 - 1, pa.uint64())},
            ": error: input_tokens: type must be int64 (got 'uint64')"),
    "dup": (lambda u: {"duplicate": True}, ": error: input_tokens: duplicate column"),
    "json": (lambda u: {"meta": b"{not json"}, ": error: llmtraces.trace metadata is not JSON"),
}


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("to", ["parquet", "mooncake"])
def test_bad_unified_parquet_is_one_line_and_writes_nothing(case: str, to: str, unified: Path,
                                                            tmp_path: Path, cli: Cli):
    change, expected = BAD[case]
    bad = _rewrite(unified, tmp_path / f"{case}.parquet", **change(unified))
    out = tmp_path / f"out.{to}"
    result = cli("convert", str(bad), "--to", to, "-o", str(out))
    assert result.exit_code == 1, result.output
    assert not isinstance(result.exception, (KeyError, ValueError, pa.ArrowException))
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and f"{bad}{expected}" in lines[0], result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [bad.name]


def test_unwritable_output_is_one_line(code_csv: Path, tmp_path: Path, cli: Cli):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    out = blocker / "x.parquet"  # its folder is a file: cannot be made
    result = cli("convert", str(code_csv), "-o", str(out))
    assert result.exit_code == 1, result.output
    assert result.output.strip() == f"Error: {out}: cannot write here: {blocker} is not " \
                                    "a folder"


def test_file_size_limit_is_one_line_and_leaves_nothing(code_csv: Path, tmp_path: Path):
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, resource.RLIM_INFINITY))

    out = tmp_path / "full.parquet"
    run = subprocess.run([sys.executable, "-c", "from llmtraces.cli import main; main()",
                          "convert", str(code_csv), "-o", str(out)], capture_output=True,
                         text=True, preexec_fn=limit, timeout=120, cwd=tmp_path)
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.strip().startswith(f"Error: {out}: cannot write here: ")
    assert "File too large" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_sigterm_and_sighup_clean_up_as_ctrl_c(tmp_path: Path):
    dest = tmp_path / "out.parquet"
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with pytest.raises(KeyboardInterrupt), signals_interrupt(), atomic_path(dest) as tmp:
            tmp.write_bytes(b"partial")
            os.kill(os.getpid(), sig)
        assert list(tmp_path.iterdir()) == []
        assert signal.getsignal(sig) is not signal.getsignal(signal.SIGINT)


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_stale_temp_files_and_scratch_of_dead_runs_are_swept(tmp_path: Path):
    dead, alive = _dead_pid(), os.getppid()
    stale = tmp_path / f".other.parquet.{dead}.0123abcd.tmp"
    live = tmp_path / f".other.parquet.{alive}.0123abcd.tmp"
    stale.write_bytes(b"x")
    live.write_bytes(b"x")
    with atomic_path(tmp_path / "out.csv") as tmp:
        tmp.write_text("done")
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "out.csv"]

    scratch = tmp_path / "raw"
    (scratch / f".members-{dead}-abc").mkdir(parents=True)
    (scratch / f".members-{dead}-abc" / "member.csv").write_text("x")
    (scratch / f".members-{alive}-abc").mkdir()
    sweep_stale(scratch, ".members-")
    assert [p.name for p in scratch.iterdir()] == [f".members-{alive}-abc"]
