"""``llmtraces convert FILE`` keeps pyarrow from importing pandas and leaves the download
stack and the transforms unloaded (start-up cost), allocates from jemalloc where pyarrow has
it (peak memory), and the output is the one the library writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmtraces.pipeline.convert import convert_file

FIXTURE = Path(__file__).parent / "fixtures" / "burstgpt" / "head_3.csv"

_PROBE = """
import json, sys
from llmtraces.cli import main
code = None
try:
    main(sys.argv[2:], prog_name="llmtraces")
except SystemExit as exc:
    code = exc.code
before = "pandas" in sys.modules
download = sorted(m for m in ("requests", "urllib3", "filelock", "tqdm") if m in sys.modules)
transforms = "llmtraces.transforms" in sys.modules
import pyarrow as pa
pool = pa.default_memory_pool().backend_name
probe = pa.table({"a": [1]}).to_pandas()  # pandas still loads when asked for
with open(sys.argv[1], "w", encoding="utf-8") as fh:
    json.dump({"code": code, "before": before, "download": download, "pool": pool,
               "transforms": transforms,
               "frame": type(probe).__name__}, fh)
"""


def test_convert_does_not_import_pandas(tmp_path: Path):
    pytest.importorskip("pandas")
    out, dest = tmp_path / "probe.json", tmp_path / "cli.parquet"
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    env["LLMTRACES_HOME"] = str(tmp_path / "home")
    done = subprocess.run([sys.executable, "-c", _PROBE, str(out), "convert", str(FIXTURE),
                           "-o", str(dest), "-q"], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["code"] in (0, None), done.stderr
    assert result["before"] is False  # pandas was not imported by the command
    assert result["download"] == []  # nor the HTTP stack: a local file needs no download
    assert result["transforms"] is False  # nor the transforms, when none is asked for
    try:
        pa.jemalloc_memory_pool()
        expected = "jemalloc"
    except NotImplementedError:  # a pyarrow built without it keeps its default pool
        expected = pa.default_memory_pool().backend_name
    assert result["pool"] == expected
    assert result["frame"] == "DataFrame"
    lib = tmp_path / "lib.parquet"
    convert_file(FIXTURE, lib)
    assert pq.read_table(dest).equals(pq.read_table(lib))
