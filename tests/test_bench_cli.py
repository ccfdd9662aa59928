"""``llmtraces bench``: spec validation, the dry-run plan, one point from the CLI, report,
compare (refusing different workloads), plot, and resuming a sweep killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from bench_helpers import SIM, spec_data, toml_of, uniform_trace

from conftest import REPO, Cli
from llmtraces.bench.outputs import RunDir
from llmtraces.bench.spec import SpecError, json_schema_text, parse_spec
from llmtraces.serve.sim import SimServer


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer(**SIM) as srv:  # type: ignore[arg-type]
        yield srv


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return uniform_trace(tmp_path_factory.mktemp("trace") / "uniform.parquet")


SHORT = ["--warmup-s", "0.2", "--measure-s", "1", "--min-requests", "25", "--drain-s", "0.5",
         "--cooldown-s", "0", "--telemetry", "off", "--slo", "ttft=50", "--late-ms", "50"]


def test_the_spec_schema_file_is_current() -> None:
    assert (REPO / "schemas" / "bench-spec.schema.json").read_text() == json_schema_text()


@pytest.mark.parametrize(("change", "message"), [
    ({"engine": [{"id": "a", "kind": "tgi"}]}, "spec.toml: engine.0.kind: Input should be"),
    ({"engine": [{"id": "a", "kind": "url"}]}, "spec.toml: engine.0: Value error, a url "
                                                "engine needs endpoint"),
    ({"workload": {}}, "spec.toml: workload.trace: Field required"),
    ({"measure": {"min_requests": 10}}, "measure.min_requests = 10 can never PASS at "
                                        "attainment 0.9"),
    ({"search": {"precision": 0.05}}, "give exactly one of [search] and [load]"),
    ({"load": {"rps": [1.0], "concurrency": [2]}}, "spec.toml: load: Value error, give exactly "
                                                   "one of rps"),
    ({"slo": {"ttft_ms": None, "tpot_ms": None}}, "give at least one of ttft_ms"),
    ({"colour": "red"}, "spec.toml: colour: Extra inputs are not permitted"),
])
def test_spec_errors_name_the_key(change: dict[str, object], message: str) -> None:
    data = spec_data(Path("t.parquet"), "http://127.0.0.1:9")
    data.update(change)
    with pytest.raises(SpecError) as err:
        parse_spec(data, "spec.toml")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_run_rejects_a_bad_spec_file_in_one_line(cli: Cli, tmp_path: Path) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text('name = "x"\n[workload]\ntrace = "t.parquet"\n[[engine]]\nid = "e"\n'
                    'kind = "vllm"\nargs = "--max-num-seqs"\n[load]\nrps = [1.0]\n')
    result = cli("bench", "run", str(spec), "--dry-run")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: {spec}: engine.0.args: Input should be a valid list"]
    spec.write_text("name = [")
    assert "not valid TOML" in cli("bench", "run", str(spec)).output


def test_dry_run_prints_every_argv(cli: Cli, tmp_path: Path) -> None:
    data = spec_data(Path("t.parquet"), "http://127.0.0.1:9")
    data["engine"] = [{"id": "vllm8b", "kind": "vllm", "model": "meta-llama/Llama-3.1-8B",
                       "args": ["--max-num-seqs", "256"]},
                      {"id": "mine", "kind": "url", "endpoint": "http://127.0.0.1:9"}]
    data["serve"] = [{"name": "mem090", "args": ["--gpu-memory-utilization", "0.90"]},
                     {"name": "mem060", "args": ["--gpu-memory-utilization", "0.60"]}]
    spec = tmp_path / "sweep.toml"
    spec.write_text(toml_of(data))
    result = cli("bench", "run", str(spec), "--dry-run", "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    runs = {(r["engine"], r["serve"]): r for r in plan["runs"]}
    assert len(runs) == 4 and plan["name"] == "t"
    argv = runs["vllm8b", "mem060"]["argv"]
    assert argv[:3] == ["vllm", "serve", "meta-llama/Llama-3.1-8B"]
    assert "--max-num-seqs" in argv and argv[-2:] == ["--gpu-memory-utilization", "0.60"]
    assert "127.0.0.1" in argv
    assert runs["mine", "mem090"]["argv"] == []          # a url engine launches nothing
    assert runs["vllm8b", "mem090"]["points"] == ["rps=15-r0", "rps=25-r0", "rps=60-r0"]
    assert not (tmp_path / "out").exists()               # nothing ran, nothing written


def _point(cli: Cli, trace: Path, url: str, out: Path, *extra: str) -> None:
    result = cli("bench", "point", str(trace), "--engine", "url", "--endpoint", url,
                 "--rps", "20", *SHORT, *extra, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output


def test_point_report_compare_and_plot(cli: Cli, sim: SimServer, trace: Path,
                                       tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    _point(cli, trace, sim.url, a)
    for name in ("plan.json", "env.json", "results.parquet", "state.jsonl"):
        assert (a / name).is_file(), name
    point = a / "engines" / "url" / "default" / "points" / "rps=20-r0"
    for name in ("point.json", "requests.parquet", "summary.json", "timeseries.parquet"):
        assert (point / name).is_file(), name
    row = pq.read_table(a / "results.parquet").to_pylist()[0]
    assert row["verdict"] == "PASS" and row["n"] == 25 and row["x"] == 20.0
    assert row["energy_j"] is None and row["energy_reason"] == "telemetry off"
    rep = cli("bench", "report", str(a), "--json")
    assert rep.exit_code == 0 and json.loads(rep.output)["points"][0]["key"] == "rps=20-r0"
    assert "rps=20-r0" in cli("bench", "report", str(a)).output
    _point(cli, trace, sim.url, b)
    _point(cli, trace, sim.url, c, "--window", "5:20")
    same = cli("bench", "compare", str(a), str(b), "--json")
    assert same.exit_code == 0, same.output
    assert [r["run"] for r in json.loads(same.output)["rows"]] == [str(a), str(b)]
    differ = cli("bench", "compare", str(a), str(c))
    assert differ.exit_code == 1
    assert "replayed different workloads" in differ.output and str(c) in differ.output
    plots = cli("bench", "plot", str(a), str(b), "-o", str(tmp_path / "plots"))
    assert plots.exit_code == 0, plots.output
    for name in ("latency_vs_load.png", "attainment_vs_load.png"):
        png = tmp_path / "plots" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_after_kill_9_redoes_no_point(sim: SimServer, trace: Path, tmp_path: Path,
                                             cli: Cli) -> None:
    spec = tmp_path / "sweep.toml"
    spec.write_text(toml_of(spec_data(trace, sim.url)))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", "from llmtraces.cli import main; main()",
                             "bench", "run", str(spec), "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            events = RunDir(out).state()
            if any(e["event"] == "finished" for e in events) and \
                    sum(e["event"] == "started" for e in events) == 2:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)          # in the middle of the second point
    finally:
        proc.wait(30)
    before = RunDir(out).state()
    done = [e["key"] for e in before if e["event"] == "finished"]
    assert done == ["rps=15-r0"]
    first = out / "engines" / "sim" / "default" / "points" / "rps=15-r0" / "point.json"
    stamp = first.stat().st_mtime_ns, first.read_bytes()
    assert (out / "engines" / "sim" / "default" / "points" / ".tmp-rps=25-r0").is_dir()
    result = cli("bench", "run", str(spec), "-o", str(out), "--resume")
    assert result.exit_code == 0, result.output
    after = RunDir(out).state()[len(before):]
    started = [e["key"] for e in after if e["event"] == "started"]
    assert started == ["rps=25-r0", "rps=60-r0"]      # the finished point is not redone
    assert [e["key"] for e in after if e["event"] == "reused"] == ["rps=15-r0"]
    assert (first.stat().st_mtime_ns, first.read_bytes()) == stamp
    rows = pq.read_table(out / "results.parquet").to_pylist()
    assert sorted(r["key"] for r in rows) == ["rps=15-r0", "rps=25-r0", "rps=60-r0"]
    assert not list((out / "engines" / "sim" / "default" / "points").glob(".tmp-*"))
    verdicts = {r["key"]: r["verdict"] for r in rows}
    assert verdicts["rps=15-r0"] == "PASS" and verdicts["rps=60-r0"] == "FAIL"
    again = cli("bench", "run", str(spec), "-o", str(out))
    assert again.exit_code == 1 and "pass --resume" in again.output
