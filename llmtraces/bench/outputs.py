"""A benchmark's output folder::

    DIR/ plan.json env.json state.jsonl results.parquet capacity.json
      engines/<engine>/<serve>/ server.log capacity.json
        points/<key>/ point.json requests.parquet summary.json timeseries.parquet
                      telemetry.parquet server_metrics.parquet

A point is written under ``points/.tmp-<key>/`` and renamed once ``point.json`` is in it, so
a folder without the ``.tmp-`` prefix is complete; ``state.jsonl`` logs each point's start
and end, one JSON line at a time (appended, never rewritten). ``results.parquet`` (one flat
row per point) and ``capacity.json`` are rewritten atomically after every point.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..atomic import atomic_path
from .point import POINT, PointResult, read_point

PLAN, ENV, STATE = "plan.json", "env.json", "state.jsonl"
RESULTS, CAPACITY = "results.parquet", "capacity.json"
TMP = ".tmp-"

RESULT_SCHEMA = pa.schema([
    ("engine", pa.string()), ("serve", pa.string()), ("key", pa.string()),
    ("kind", pa.string()), ("variable", pa.string()), ("x", pa.float64()),
    ("repeat", pa.int64()), ("longer", pa.bool_()), ("verdict", pa.string()),
    ("uncertain", pa.bool_()), ("reason", pa.string()), ("n", pa.int64()), ("good", pa.int64()),
    ("attainment", pa.float64()), ("attainment_lo", pa.float64()),
    ("attainment_hi", pa.float64()), ("attainment_ttft", pa.float64()),
    ("attainment_tpot", pa.float64()), ("attainment_e2e", pa.float64()),
    ("binding_slo", pa.string()),
    *[(f"{m}_{p}_ms", pa.float64()) for m in ("ttft", "tpot", "e2e") for p in ("p50", "p90",
                                                                               "p99")],
    ("throughput_rps", pa.float64()), ("output_tps", pa.float64()),
    ("goodput_rps", pa.float64()), ("lateness_p99_ms", pa.float64()), ("kept_up", pa.bool_()),
    ("energy_j", pa.float64()), ("j_per_token", pa.float64()), ("tokens_per_j", pa.float64()),
    ("j_per_request", pa.float64()), ("j_per_good_request", pa.float64()),
    ("energy_reason", pa.string()), ("prefix_reset", pa.string()), ("digest", pa.string()),
    ("started_at", pa.string()), ("wall_s", pa.float64()),
])


def result_row(engine: str, serve: str, res: PointResult) -> dict[str, Any]:
    """The flat ``results.parquet`` row of a point."""
    row: dict[str, Any] = {
        "engine": engine, "serve": serve, "energy_reason": res.energy.get("reason"),
        **{f"attainment_{b[:-3]}": res.per_bound.get(b) for b in ("ttft_ms", "tpot_ms",
                                                                  "e2e_ms")},
        **{f"{k}_ms": v for k, v in res.latency_ms.items()},
        **{k: res.energy.get(k) for k in ("energy_j", "j_per_token", "tokens_per_j",
                                          "j_per_request", "j_per_good_request")},
    }
    data = res.to_json()
    for name in RESULT_SCHEMA.names:
        if name not in row:
            row[name] = data.get(name)
    return row


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")


class RunDir:
    """The output folder of ``bench run`` / ``capacity`` / ``point``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def group(self, engine: str, serve: str) -> Path:
        """Folder of one engine x serve variant."""
        return self.path / "engines" / engine / serve

    def point_dir(self, engine: str, serve: str, key: str) -> Path:
        """Final folder of a point."""
        return self.group(engine, serve) / "points" / key

    def add_engine_env(self, record: dict[str, Any], engine: str, serve: str) -> None:
        """Record a started engine in ``env.json``: its record becomes the file's (host,
        GPUs, packages, this engine), with every engine of the run under ``engines``."""
        path = self.path / ENV
        old = json.loads(path.read_text()) if path.exists() else {}
        engines = [e for e in old.get("engines", [])
                   if (e.get("id"), e.get("serve")) != (engine, serve)]
        engines.append({"id": engine, "serve": serve, **(record.get("engine") or {})})
        write_json(path, {**record, "engines": engines})

    def log(self, event: str, **fields: Any) -> None:
        """Append one line to ``state.jsonl`` (flushed and synced: it survives a kill -9)."""
        self.path.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"t": round(time.time(), 3), "event": event, **fields},
                          default=str) + "\n"
        with (self.path / STATE).open("a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def state(self) -> list[dict[str, Any]]:
        """Every complete line of ``state.jsonl`` (a torn last line from a kill is skipped)."""
        path = self.path / STATE
        if not path.exists():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def stored(self, engine: str, serve: str, key: str) -> PointResult | None:
        """A complete point's result, if it was measured before."""
        final = self.point_dir(engine, serve, key)
        return read_point(final) if (final / POINT).is_file() else None

    def begin_point(self, engine: str, serve: str, key: str) -> Path:
        """A fresh temporary folder for a point (a partial one from a kill is removed)."""
        final = self.point_dir(engine, serve, key)
        tmp = final.with_name(TMP + key)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        return tmp

    def finish_point(self, engine: str, serve: str, key: str, tmp: Path) -> Path:
        """Rename a point's temporary folder to its final name."""
        final = self.point_dir(engine, serve, key)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        return final

    def points(self) -> Iterator[tuple[str, str, PointResult]]:
        """Every complete point, as (engine, serve, result), in the order they started."""
        found = []
        for path in sorted(self.path.glob(f"engines/*/*/points/*/{POINT}")):
            if path.parent.name.startswith(TMP):
                continue
            res = read_point(path.parent)
            found.append((res.started_at or "", path.parts[-5], path.parts[-4], res))
        for _, engine, serve, res in sorted(found, key=lambda f: f[0]):
            yield engine, serve, res

    def write_results(self, rows: list[dict[str, Any]]) -> None:
        """Rewrite ``results.parquet`` with ``rows`` (atomically)."""
        table = pa.Table.from_pylist(rows, schema=RESULT_SCHEMA)
        with atomic_path(self.path / RESULTS) as tmp:
            pq.write_table(table, tmp)

    def append_result(self, engine: str, serve: str, res: PointResult) -> None:
        """Add a point's row to ``results.parquet``."""
        path = self.path / RESULTS
        rows = pq.read_table(path).to_pylist() if path.exists() else []
        rows = [r for r in rows if (r["engine"], r["serve"], r["key"]) != (engine, serve,
                                                                           res.key)]
        self.write_results([*rows, result_row(engine, serve, res)])

    def rebuild_results(self) -> int:
        """``results.parquet`` from the point folders alone; the number of rows."""
        rows = [result_row(e, s, r) for e, s, r in self.points()]
        self.write_results(rows)
        return len(rows)
