"""A quick command: what each start-up path imports (never how long it takes), the lazy package
top level, and ``list`` fitted to the terminal."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import llmtraces
from llmtraces.cli import SUMMARIES, VERBS, main
from llmtraces.cli.list_ import render
from llmtraces.registry import load_registry

#: Runs the command as the console script does, then writes which modules it imported.
_PROBE = """
import json, sys
from llmtraces.cli import main
code = None
try:
    main(sys.argv[2:], prog_name="llmtraces")
except SystemExit as exc:
    code = exc.code
with open(sys.argv[1], "w", encoding="utf-8") as fh:
    json.dump({"code": code, "modules": sorted(sys.modules)}, fh)
"""
HEAVY = ("pyarrow", "requests")


def imported_by(tmp_path: Path, *args: str) -> set[str]:
    """The modules a fresh interpreter has imported after running ``llmtraces ARGS``."""
    out = tmp_path / "modules.json"
    env = {**os.environ, "LLMTRACES_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-c", _PROBE, str(out), *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert out.is_file(), done.stderr
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["code"] in (0, None), done.stdout + done.stderr
    return set(result["modules"])


def under(modules: set[str], *packages: str) -> list[str]:
    """The modules that are one of ``packages`` or inside one."""
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in packages))


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_version_and_help_import_only_click(tmp_path: Path, flag: str):
    modules = imported_by(tmp_path, flag)
    assert "click" in modules  # the probe did run the command
    assert not under(modules, *HEAVY, "pydantic", "llmtraces.formats", "llmtraces.registry")
    verbs = [f"llmtraces.cli.{m}" for m in VERBS.values()]
    assert not [m for m in verbs if m in modules], "add the verb to SUMMARIES in llmtraces.cli"


@pytest.mark.parametrize("args", [("list",), ("info", "azure-llm-2023"), ("cite", "mooncake")])
def test_registry_verbs_import_neither_pyarrow_nor_requests(tmp_path: Path, args: tuple[str, ...]):
    modules = imported_by(tmp_path, *args)
    assert "llmtraces.registry" in modules and "pydantic" in modules
    assert not under(modules, *HEAVY, "llmtraces.formats")


def test_import_llmtraces_imports_only_its_version(tmp_path: Path):
    out = tmp_path / "modules.json"
    subprocess.run([sys.executable, "-c", "import json, sys, llmtraces; json.dump(sorted("
                    f"sys.modules), open({str(out)!r}, 'w'))"], check=True, timeout=60)
    assert under(set(json.loads(out.read_text())), "llmtraces") == ["llmtraces",
                                                                    "llmtraces._version"]


def test_help_lists_each_verb_as_its_own_help_would():
    assert list(SUMMARIES) == list(VERBS)
    ctx = click.Context(main)
    for verb in VERBS:
        real = main.get_command(ctx, verb)
        assert real is not None and not real.hidden
        for limit in (20, 45, 62, 1000):
            listed = click.Command(verb, help=SUMMARIES[verb]).get_short_help_str(limit)
            assert listed == real.get_short_help_str(limit), (verb, limit)
    shown = CliRunner().invoke(main, ["--help"]).output
    assert [line.split()[0] for line in shown.split("Commands:\n")[1].splitlines()] == list(VERBS)


def test_package_exports_resolve_lazily_to_their_definitions():
    import llmtraces.api
    import llmtraces.transforms

    assert set(llmtraces.__all__) == {*llmtraces._EXPORTS, "__version__"}
    assert set(llmtraces.__all__) <= set(dir(llmtraces))
    for name, module in llmtraces._EXPORTS.items():
        defined = importlib.import_module(f"llmtraces.{module}")
        expected = defined if name == module else getattr(defined, name)
        assert getattr(llmtraces, name) is expected, name
    assert llmtraces.export is llmtraces.api.export
    assert llmtraces.filter is llmtraces.transforms.filter
    with pytest.raises(AttributeError, match="has no attribute 'lod'"):
        llmtraces.lod  # noqa: B018


def test_sources_is_the_api_function():
    from llmtraces.api import sources

    assert sources is llmtraces.sources and "Every source in the registry" in sources.__doc__
    assert [s.id for s in llmtraces.sources()] == sorted(load_registry())


def rows_of(width: int) -> list[str]:
    """``llmtraces list`` as printed to a terminal ``width`` columns wide."""
    result = CliRunner().invoke(main, ["list"], env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


@pytest.mark.parametrize("width", [80, 200])
def test_list_fits_the_terminal_and_keeps_every_word(width: int):
    lines = rows_of(width)
    assert max(len(line) for line in lines) <= width
    starts = [line.split()[0] for line in lines if line and not line[0].isspace()]
    ids = sorted(load_registry())
    assert [s for s in starts if s != "id"] == ids
    words = " ".join(lines).split()
    for source in load_registry().values():  # wrapped, never cut: every word is still there
        for word in source.name.split():
            assert any(word in w for w in words), (source.id, word)


def test_list_at_200_columns_is_a_table_whose_columns_read_back():
    lines = rows_of(200)
    header = lines[0]
    assert header.split() == ["id", "traces", "rows", "size", "licence", "terms", "name"]
    start = header.index("name")
    names: dict[str, str] = {}
    current = ""
    for line in lines[1:]:
        if not line[0].isspace():
            current = line.split()[0]
        names[current] = names.get(current, "") + line[start:]
    for source in load_registry().values():
        assert "".join(names[source.id].split()) == "".join(source.name.split())


def test_list_at_80_columns_gives_each_source_a_block():
    text = "\n".join(rows_of(80))
    flat = " ".join(text.split())
    for source in load_registry().values():
        assert f"{source.id} {' '.join(source.name.split())}" in flat
    assert "licence: CC-BY-NC-4.0 (no redistribution, non-commercial)" in flat


def test_list_piped_keeps_one_line_per_source():
    result = CliRunner().invoke(main, ["list"], env={"COLUMNS": None})
    assert len(result.output.splitlines()) == 1 + len(load_registry())


def test_render_splits_words_too_long_for_the_width():
    name = "Supercalifragilistic-expialidocious-trace " * 3 + "A" * 50
    row = {"id": "x", "name": name, "traces": ["only"], "rows": 1, "bytes": 10,
           "licence": "MIT", "terms": []}
    lines = list(render([row], 24))
    assert max(len(line) for line in lines) <= 24
    assert "".join(lines[0].split()[1:] + lines[1:]).replace(" ", "").startswith(
        name.replace(" ", ""))
