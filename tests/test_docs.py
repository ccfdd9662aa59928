"""Every code example in README.md and docs/**/*.md runs, as a reader would run it.

One test per markdown file; its fenced blocks run in order in one working folder of their own,
with an empty ``LLMTRACES_HOME``, so files written by an earlier block are there for later ones.
``python`` blocks run in this process, in one namespace per file. ``bash``/``sh``/``console``
blocks run each ``llmtraces ...`` (or ``python ...``) command line through bash with the venv's
entry point; lines of other tools (pip, aiperf, vllm, ...) are not run. A block without a
language whose lines start with ``$ `` runs those commands and checks the lines that follow as
their output, loosely. Other blocks (data excerpts, JSON, BibTeX) are not run. An HTML comment
right before a block says how to run it; the convention is in docs/design.md ("Docs that run").

Nothing reaches the network: every source's files are served on 127.0.0.1 from tests/fixtures
(or built from them) under a copy of the registry re-pinned to them (conftest.build_registry).
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest
from click.testing import CliRunner
from httpserver import LoopbackServer, Route

import llmtraces
from conftest import CODE_NAME, CONV_NAME, FIXTURES, REPO, SOURCE, build_registry
from llmtraces.cli import main

DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
BIN = Path(sys.executable).parent
SHELLS = {"bash", "sh", "shell", "console"}
#: Programs whose command lines run; any other program's line is shown to the reader only.
RUNNABLE = {"llmtraces", "python"}
SERVERS = {"serve-sim": 8000, "serve-llamacpp": 8080}  # verb -> its default port
REPLAY_DEFAULT_PORT = 8000
COMMAND_TIMEOUT_S = 180
SERVER_START_S = 90
OPTIONS = {"mirror", "skip", "reason", "given", "sub", "requires"}


# -- parsing -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Options:
    """What the ``<!-- doctest: ... -->`` comment before a block asks for."""

    mirror: bool = False
    skip: str | None = None
    given: tuple[str, ...] = ()
    sub: tuple[tuple[str, str], ...] = ()
    requires: tuple[str, ...] = ()


@dataclass(frozen=True)
class Block:
    """One fenced code block: its file, the line of its opening fence, language and text."""

    path: Path
    line: int
    lang: str
    lines: tuple[str, ...]
    options: Options

    @property
    def where(self) -> str:
        return f"{_rel(self.path)}:{self.line}"


FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)\s*$")
DIRECTIVE = re.compile(r"^\s*<!--\s*doctest:(?P<opts>.*?)-->\s*$")


def parse_options(text: str, where: str) -> Options:
    """The options of one directive: ``mirror``, ``skip reason="..."``, ``given="A B"``,
    ``sub="OLD -> NEW"`` (repeatable) and ``requires="module"``."""
    found: dict[str, str] = {}
    subs: list[tuple[str, str]] = []
    for token in shlex.split(text):
        key, _, value = token.partition("=")
        if key not in OPTIONS:
            raise ValueError(f"{where}: unknown doctest option {key!r} (known: "
                             f"{', '.join(sorted(OPTIONS))})")
        if key == "sub":
            old, arrow, new = value.partition(" -> ")
            if not arrow:
                raise ValueError(f'{where}: sub needs "OLD -> NEW", got {value!r}')
            subs.append((old, new))
        found[key] = value
    if "skip" in found and not found.get("reason"):
        raise ValueError(f'{where}: skip needs reason="why the block cannot run"')
    return Options(mirror="mirror" in found, skip=found["reason"] if "skip" in found else None,
                   given=tuple(found.get("given", "").split()), sub=tuple(subs),
                   requires=tuple(found.get("requires", "").split()))


def parse(path: Path) -> list[Block]:
    """The fenced blocks of a markdown file, each with the directive on the line before it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    pending: tuple[int, str] | None = None
    i = 0
    while i < len(lines):
        where = f"{_rel(path)}:{i + 1}"
        if m := DIRECTIVE.match(lines[i]):
            pending = (i, m["opts"])
        elif m := FENCE.match(lines[i]):
            end = next((j for j in range(i + 1, len(lines))
                        if lines[j].strip() == "```"), None)
            if end is None:
                raise ValueError(f"{where}: code block never closed")
            opts = Options()
            if pending is not None:
                if pending[0] != i - 1:
                    raise ValueError(f"{_rel(path)}:{pending[0] + 1}: a doctest "
                                     "comment must be on the line right before its block")
                opts = parse_options(pending[1], where)
                pending = None
            indent = len(m["indent"])
            body = tuple(line[indent:] if not line[:indent].strip() else line.lstrip()
                         for line in lines[i + 1:end])
            blocks.append(Block(path, i + 1, m["lang"].lower(), body, opts))
            i = end
        elif pending is not None and lines[i].strip():
            raise ValueError(f"{_rel(path)}:{pending[0] + 1}: a doctest comment "
                             "must be on the line right before its block")
        i += 1
    if pending is not None:
        raise ValueError(f"{_rel(path)}:{pending[0] + 1}: doctest comment with "
                         "no block after it")
    return blocks


@dataclass(frozen=True)
class Command:
    """One command line of a shell block (continuations joined) and, in an output block, the
    output lines the reader is shown after it."""

    line: int
    text: str
    expect: tuple[str, ...] | None = None


def strip_comment(text: str) -> str:
    """``text`` without a trailing shell comment (a ``#`` starting a word outside quotes)."""
    quote = ""
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1].isspace()):
            return text[:i].rstrip()
    return text.rstrip()


def commands(block: Block) -> list[Command]:
    """The command lines of a shell block; for an output block, each ``$ `` line with the
    lines after it as its expected output."""
    out: list[Command] = []
    output_block = is_output_block(block)
    i = 0
    while i < len(block.lines):
        line, start = block.lines[i], block.line + 1 + i
        if output_block and not line.startswith("$ "):
            if out and out[-1].expect is not None:
                out[-1] = Command(out[-1].line, out[-1].text, (*out[-1].expect, line))
            i += 1
            continue
        text = line[2:] if output_block else line
        while text.endswith("\\") and i + 1 < len(block.lines):
            i += 1
            text = text[:-1].rstrip() + " " + block.lines[i].strip()
        i += 1
        text = strip_comment(text)
        if text:
            out.append(Command(start, text, () if output_block else None))
    return out


def is_output_block(block: Block) -> bool:
    """A ``console`` block, or one with no language whose lines start with ``$ ``."""
    return block.lang == "console" or (
        block.lang == "" and any(line.startswith("$ ") for line in block.lines))


def runs(block: Block) -> bool:
    """Whether a block is code to run (python, a shell, or shell commands with output)."""
    return block.lang == "python" or block.lang in SHELLS or is_output_block(block)


def program(tokens: list[str]) -> str | None:
    """The program a command line runs (after ``NAME=value`` assignments)."""
    for tok in tokens:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", tok):
            return tok
    return None


# -- the world the examples run in -----------------------------------------------------------

def _tokenizer_json() -> bytes:
    """A small word-level tokenizer.json, standing in for a user's own or a Hub tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, **{w: i for i, w in enumerate(
        "the a of to and is what how many people capital france paris".split(), start=1)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tok.to_str().encode()


def _marconi_tarball() -> bytes:
    """Marconi's traces.tar.gz in the upstream layout: every one of the registry's 30 members,
    each the Marconi fixture."""
    from test_marconi_source import JSONL, tarball

    members = [t.member.path for t in llmtraces.source("marconi", REPO / "registry")
               .traces.values() if t.member]
    return tarball({m: JSONL.read_bytes() for m in members})


def _lmsys_shard(tmp: Path) -> bytes:
    """An LMSys-Chat-1M shard in the dataset card's schema (tests/test_lmsys.py's rows)."""
    from test_lmsys import ROWS, write_shard

    return write_shard(tmp / "lmsys-shard.parquet", ROWS).read_bytes()


def _data_rows(data: bytes) -> int:
    """Data records of a CSV (less its header) or JSONL file, for a registry pin."""
    if data[:2] == b"\x1f\x8b":
        import gzip

        data = gzip.decompress(data)
    lines = [ln for ln in data.splitlines() if ln.strip()]
    return len(lines) - (0 if lines[0].startswith(b"{") else 1)


@dataclass
class World:
    """The loopback server every download of the examples goes to, and the registry copy that
    points there, pinned to the files it serves."""

    server: LoopbackServer
    registry: Path

    @property
    def url(self) -> str:
        return self.server.url


#: (source, trace) -> the file served for it, where the real one is not available offline.
STAND_INS: dict[tuple[str, str], Path] = {
    (SOURCE, "conv"): FIXTURES / SOURCE / "conv_head.csv",
    ("azure-llm-2024", "code_1week"): FIXTURES / "azure-llm-2024" / "code_1week_head.csv",
    ("azure-lmm-2025", "multimodal"): FIXTURES / "azure-lmm-2025" / "multimodal_head.csv.gz",
    **{("burstgpt", t): FIXTURES / "burstgpt" / "head_1.csv"
       for t in ("1", "2", "without_fails_1", "without_fails_2")},
    **{("burstgpt", t): FIXTURES / "burstgpt" / "head_3.csv" for t in ("3", "without_fails_3")},
    ("mooncake", "conversation"): FIXTURES / "mooncake" / "synthetic_trace.jsonl",
    ("qwen-bailian", "traceB"): FIXTURES / "qwen-bailian" / "bailian_layout.jsonl",
    ("kavier", "surf_performance"): FIXTURES / "kavier" / "performance_tracing_head.csv",
}
#: Real files served as they are (their registry pins stay).
REAL = {("mooncake", "synthetic_trace.jsonl"): FIXTURES / "mooncake" / "synthetic_trace.jsonl",
        ("kavier", "raw_prefill.csv"): FIXTURES / "kavier-traces" / "raw_prefill.csv",
        ("kavier", "raw_decode.csv"): FIXTURES / "kavier-traces" / "raw_decode.csv"}
HUB_TOKENIZER = "meta-llama/Llama-2-7b-hf"


@pytest.fixture()
def world(tmp_path: Path, mirror: LoopbackServer) -> World:
    """The ``mirror`` server (both Azure 2023 files) plus every other source the docs use:
    plain files as ``/<source>/<file>``, Marconi's tarball, the LMSys shards and their Hub tree,
    a Hub tokenizer, and the LLM Trace Archive's Zenodo record."""
    from test_lmsys import HUB_REPO, SHARD, hub_routes
    from test_trace_archive import FILES, serve_record

    server = mirror
    pins: dict[tuple[str, str], tuple[bytes, int]] = {}
    for (source, trace), path in STAND_INS.items():
        data = path.read_bytes()
        pins[(source, trace)] = (data, _data_rows(data))
        entry = llmtraces.source(source, REPO / "registry").traces[trace].file
        assert entry is not None
        server.routes[f"/{source}/{entry.name}"] = Route(data)
    for (source, name), path in REAL.items():
        server.routes[f"/{source}/{name}"] = Route(path.read_bytes())
    server.routes["/marconi/traces.tar.gz"] = Route(_marconi_tarball())
    shard = _lmsys_shard(tmp_path)
    hub_routes(server, shard)
    # Not gated here: the examples run without a Hub login (tests/test_lmsys.py checks tokens).
    server.routes[f"/datasets/{HUB_REPO}/resolve/main/data/{SHARD}"] = Route(shard)
    for t in llmtraces.source("lmsys-chat-1m", REPO / "registry").traces.values():
        assert t.file is not None
        server.routes[f"/lmsys-chat-1m/{t.file.name}"] = Route(shard)
    server.routes[f"/{HUB_TOKENIZER}/resolve/main/tokenizer.json"] = Route(_tokenizer_json())
    serve_record(server, FILES)
    reg = build_registry(tmp_path / "registry", server.url, pins)
    return World(server, reg)


# -- files a reader is presumed to hold (given="...") -----------------------------------------

def _copy(src: Path) -> Callable[[Path], None]:
    """The file ``src``, byte for byte."""
    def make(dest: Path) -> None:
        shutil.copyfile(src, dest)
    return make


def _converted(src: Path, *args: str) -> Callable[[Path], None]:
    """The file ``llmtraces convert SRC ARGS -o DEST`` writes."""
    def make(dest: Path) -> None:
        result = CliRunner().invoke(main, ["convert", str(src), *args, "-o", str(dest), "-q"])
        assert result.exit_code == 0, result.output
    return make


def _written(data: Callable[[], bytes]) -> Callable[[Path], None]:
    """A file of the bytes ``data()`` builds."""
    def make(dest: Path) -> None:
        dest.write_bytes(data())
    return make


def _bad_csv() -> bytes:
    """An Azure 2023 CSV whose line 3 has a negative ContextTokens."""
    head = (FIXTURES / SOURCE / "conv_head.csv").read_bytes().split(b"\r\n")[:3]
    fields = head[2].split(b",")
    return b"\r\n".join([*head[:2], b",".join([fields[0], b"-4", *fields[2:]])])


CODE_CSV = REPO / "llmtraces" / "data" / SOURCE / CODE_NAME
CONV_CSV = FIXTURES / SOURCE / "conv_head.csv"
MARCONI_JSONL = FIXTURES / "marconi" / "lmsys_sps=0.5_nums=2.jsonl"
DERIVED = FIXTURES / "derived"
#: Name -> how to make it. The real file where the tests have it, else the fixture that
#: stands in for it (README.md in each fixture folder says what it is).
GIVEN: dict[str, Callable[[Path], None]] = {
    CODE_NAME: _copy(CODE_CSV),
    CONV_NAME: _copy(CONV_CSV),
    "my_copy.csv": _copy(CONV_CSV),
    "BurstGPT_1.csv": _copy(FIXTURES / "burstgpt" / "head_1.csv"),
    "BurstGPT_3.csv": _copy(FIXTURES / "burstgpt" / "head_3.csv"),
    "synthetic_trace.jsonl": _copy(FIXTURES / "mooncake" / "synthetic_trace.jsonl"),
    "qwen_traceB_blksz_16.jsonl": _copy(FIXTURES / "qwen-bailian" / "bailian_layout.jsonl"),
    "raw_decode.csv": _copy(FIXTURES / "kavier-traces" / "raw_decode.csv"),
    "rr_code_50.csv": _copy(DERIVED / "rr_code_50_head.csv"),
    "splitwise_code.csv": _copy(DERIVED / "splitwise_code_head.csv"),
    "splitwise_conv.csv": _copy(DERIVED / "splitwise_conv_head.csv"),
    "arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv":
        _copy(DERIVED / "arxiv_summarization_stats_head.csv"),
    "test_trace.csv": _copy(DERIVED / "test_trace.csv"),
    "traces.tar.gz": _written(_marconi_tarball),
    "tokenizer.json": _written(_tokenizer_json),
    "bad.csv": _written(_bad_csv),
    "code.parquet": _converted(CODE_CSV),
    "conv.parquet": _converted(CONV_CSV),
    "marconi.parquet": _converted(MARCONI_JSONL),
    "trace.parquet": _converted(FIXTURES / "burstgpt" / "head_1.csv"),
    "marconi_full.parquet": _converted(FIXTURES / "marconi" / "input_marconi.csv",
                                       "--to", "kavier-parquet"),
}


# -- running a file ----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A server command running in the background, in its own process group."""

    command: Command
    proc: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class DocRun:
    """Runs the blocks of one markdown file in order, in one working folder."""

    doc: Path
    world: World
    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    namespace: dict[str, object] = field(default_factory=lambda: {"__name__": "__doc__"})
    ports: dict[int, int] = field(default_factory=dict)
    servers: list[Server] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.work = self.tmp / "work"
        self.user = self.tmp / "user"  # $HOME: ~/Downloads/... lands here
        for d in (self.work, self.user / "Downloads"):
            d.mkdir(parents=True)

    # environment
    def env(self, block: Block) -> dict[str, str]:
        """The variables a block runs with: this file's cache and registry; with ``mirror``
        the loopback hosts, else ``LLMTRACES_OFFLINE=1`` so that no download can happen."""
        url = self.world.url
        env = {"LLMTRACES_HOME": os.environ["LLMTRACES_HOME"],
               "LLMTRACES_REGISTRY": str(self.world.registry),
               "LLMTRACES_DL_BACKOFF": "0", "LLMTRACES_DL_TIMEOUT": "10",
               "HOME": str(self.user), "HF_HOME": str(self.user / "hf"),
               "HF_ENDPOINT": url, "LLMTRACES_ZENODO_URL": url, "LLMTRACES_GDRIVE_URL": url}
        env.update({"LLMTRACES_MIRROR": url} if block.options.mirror else
                   {"LLMTRACES_OFFLINE": "1"})
        return env

    def process_env(self, block: Block) -> dict[str, str]:
        """os.environ less anything that could reach a user's cache, Hub login or server."""
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("LLMTRACES_", "HF_", "OPENAI_")) and k != "BASH_ENV"}
        keep["PATH"] = f"{BIN}{os.pathsep}{keep.get('PATH', '')}"
        keep.update(self.env(block))
        return keep

    # text rewriting
    def port(self, n: int) -> int:
        """This file's free port standing in for the documented port ``n``."""
        if n not in self.ports:
            self.ports[n] = free_port()
        return self.ports[n]

    def rewrite(self, text: str, block: Block, port: Callable[[int], int] | None = None
                ) -> str:
        """Fixed ports (1000 and up) to free ones, any host in a URL with such a port to
        127.0.0.1, then the block's ``sub`` replacements. ``port`` maps a documented port
        (default: to this file's stand-in for it, the same in every block)."""
        port = port or self.port
        text = re.sub(r"(--port[ =])([1-9]\d{3,})", lambda m: m[1] + str(port(int(m[2]))),
                      text)
        text = re.sub(r"(https?://)[A-Za-z0-9.-]+:([1-9]\d{3,})",
                      lambda m: f"{m[1]}127.0.0.1:{port(int(m[2]))}", text)
        for old, new in block.options.sub:
            text = text.replace(old, new.format(mirror=self.world.url))
        return text

    def defaults(self, text: str, args: list[str], block: Block,
                 port: Callable[[int], int] | None = None) -> str:
        """``text`` rewritten; a server without ``--port`` and a replay without ``--endpoint``
        are given their default ports first."""
        verb = args[1] if len(args) > 1 and args[0] == "llmtraces" else ""
        if verb in SERVERS and "--port" not in args:
            text += f" --port {SERVERS[verb]}"
        if verb == "replay" and "--endpoint" not in args:
            text += f" --endpoint http://127.0.0.1:{REPLAY_DEFAULT_PORT}"
        return self.rewrite(text, block, port)

    # blocks
    def run(self, block: Block) -> None:
        t0 = time.monotonic()
        self._run(block)
        if runs(block):
            print(f"{block.where}: {time.monotonic() - t0:.1f} s")

    def _run(self, block: Block) -> None:
        if not runs(block):
            return
        if block.options.skip:
            self.not_run.append(f"{block.where}: skipped: {block.options.skip}")
            return
        missing = [m for m in block.options.requires if not _importable(m)]
        if missing:
            warnings.warn(f"{block.where}: not run: needs {', '.join(missing)}", stacklevel=1)
            return
        for name in block.options.given:
            self.give(name, block)
        if block.lang == "python":
            self.run_python(block)
        else:
            for cmd in commands(block):
                self.run_command(cmd, block)

    def give(self, name: str, block: Block) -> None:
        """Put a file the reader is presumed to hold where the block expects it."""
        dest = self.user / name[2:] if name.startswith("~/") else self.work / name
        if dest.exists():
            return
        make = GIVEN.get(dest.name)
        if make is None:
            fail(f"{block.where}: given={name!r}: no such file in GIVEN (tests/test_docs.py); "
                 f"known: {', '.join(sorted(GIVEN))}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        make(dest)

    def run_python(self, block: Block) -> None:
        """The block in this file's namespace, with tracebacks on the markdown's lines."""
        source = self.rewrite("\n" * block.line + "\n".join(block.lines) + "\n", block)
        code = compile(source, str(block.path), "exec")
        with self.monkeypatch.context() as mp:
            mp.chdir(self.work)
            for key in ("LLMTRACES_MIRROR", "LLMTRACES_OFFLINE", "OPENAI_API_KEY", "HF_TOKEN"):
                mp.delenv(key, raising=False)
            for key, value in self.env(block).items():
                mp.setenv(key, value)
            try:
                exec(code, self.namespace)  # noqa: S102 (the docs' own examples)
            except BaseException as exc:
                exc.add_note(f"in the python block at {block.where}")
                raise

    def run_command(self, cmd: Command, block: Block) -> None:
        """Each ``&&`` part of a command line whose program is llmtraces or python."""
        for part in re.split(r"\s&&\s", cmd.text):
            tokens = shlex.split(part)
            prog = program(tokens)
            if prog not in RUNNABLE:
                self.not_run.append(f"{_rel(block.path)}:{cmd.line}: not run: {prog}")
                continue
            args = tokens[tokens.index(prog):] if prog else []
            background = args[-1] == "&"
            text = part.rstrip().removesuffix("&").rstrip() if background else part
            if background:
                args = args[:-1]
            if prog == "llmtraces" and len(args) > 1 and args[1] in SERVERS:
                if background:  # serves the file's later lines on its port
                    text = self.defaults(text, args, block)
                    self.servers.append(self.start(Command(cmd.line, text), block))
                else:  # blocks the terminal until Ctrl-C: check that it comes up, on any port
                    text = self.defaults(text, args, block, lambda n: free_port())
                    self.stop(self.start(Command(cmd.line, text), block))
                continue
            if background:
                fail(f"{_rel(block.path)}:{cmd.line}: only servers may run in the background")
            self.execute(Command(cmd.line, self.defaults(text, args, block), cmd.expect), block)

    def execute(self, cmd: Command, block: Block) -> None:
        """Run one command; it must exit 0, or, in an output block, print what is shown."""
        t0 = time.monotonic()
        try:
            done = subprocess.run(["bash", "-c", cmd.text], cwd=self.work,
                                  env=self.process_env(block), capture_output=True, text=True,
                                  timeout=COMMAND_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            fail(f"{_rel(block.path)}:{cmd.line}: `{cmd.text}` ran past "
                 f"{COMMAND_TIMEOUT_S} s\n{exc.stdout!r}\n{exc.stderr!r}")
        output = done.stdout + done.stderr
        print(f"  {cmd.line}: {time.monotonic() - t0:.1f} s  {cmd.text[:90]}")
        if cmd.expect is not None:
            check_output(cmd, output, block)
        elif done.returncode != 0:
            fail(f"{_rel(block.path)}:{cmd.line}: `{cmd.text}` exited "
                 f"{done.returncode}:\n{_tail(output)}")

    def start(self, cmd: Command, block: Block) -> Server:
        """Start a server command; wait until it says where it listens."""
        log = self.tmp / f"server-{cmd.line}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(["bash", "-c", cmd.text], cwd=self.work,
                                    env=self.process_env(block), stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        server = Server(cmd, proc, log)
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if m := re.search(r"listening on (http://\S+)", server.output()):
                server.url = m[1]
                return server
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop(server, check=False)
        fail(f"{_rel(block.path)}:{cmd.line}: `{cmd.text}` did not start "
             f"listening:\n{_tail(server.output())}")

    def stop(self, server: Server, *, check: bool = True) -> None:
        """Ctrl-C a server (its whole process group); it must have been up until now and
        stop cleanly."""
        crashed = server.proc.poll()
        if crashed is None:
            os.killpg(server.proc.pid, signal.SIGINT)
            try:
                server.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.proc.pid, signal.SIGKILL)
                server.proc.wait()
        if check and (crashed is not None or server.proc.returncode not in (0, 130)):
            fail(f"{_rel(self.doc)}:{server.command.line}: `{server.command.text}` "
                 + (f"exited {crashed} while in use" if crashed is not None else
                    f"did not stop cleanly on Ctrl-C ({server.proc.returncode})")
                 + f":\n{_tail(server.output())}")

    def stop_all(self, *, check: bool) -> None:
        while self.servers:
            self.stop(self.servers.pop(), check=check)


def check_output(cmd: Command, output: str, block: Block) -> None:
    """The shown output, whitespace-insensitive, with ``...`` matching anything, must appear in
    order in what the command printed (stdout and stderr)."""
    expected = " ".join(" ".join(cmd.expect or ()).split())
    actual = " ".join(output.split())
    at = 0
    for piece in (p.strip() for p in expected.split("...")):
        found = actual.find(piece, at)
        if found < 0:
            fail(f"{_rel(block.path)}:{cmd.line}: `{cmd.text}` printed\n"
                 f"{_tail(output)}\nwhich lacks the documented\n{piece}")
        at = found + len(piece)


def fail(message: str) -> NoReturn:
    """Fail the file's test with ``message`` (it names the file and line) and no traceback."""
    pytest.fail(message, pytrace=False)


def _rel(path: Path) -> str:
    """A path as failures name it: relative to the repository when inside it."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@pytest.fixture()
def docrun(request: pytest.FixtureRequest, world: World, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[DocRun]:
    run = DocRun(request.param, world, tmp_path, monkeypatch)
    try:
        yield run
    finally:
        run.stop_all(check=False)


def _registry_digest() -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(
        (REPO / "registry").glob("*.toml")))).hexdigest()


@pytest.mark.parametrize("docrun", DOCS, ids=[_rel(p) for p in DOCS], indirect=True)
def test_examples_run(docrun: DocRun):
    """Every block of the file runs, in order, as documented, and leaves the shipped registry
    as it was (``registry update-hashes`` examples write to the test copy)."""
    before = _registry_digest()
    for block in parse(docrun.doc):
        docrun.run(block)
    docrun.stop_all(check=True)
    for note in docrun.not_run:
        print(note)
    assert _registry_digest() == before


# -- the harness itself: the convention is parsed strictly, and a wrong example fails ---------

def _doc(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "x.md"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("text", "error"), [
    ("<!-- doctest: mirrors -->\n```bash\nllmtraces list\n```\n", "unknown doctest option"),
    ("<!-- doctest: skip -->\n```bash\nllmtraces list\n```\n", "skip needs reason="),
    ('<!-- doctest: sub="a b" -->\n```bash\nllmtraces list\n```\n', "sub needs"),
    ("<!-- doctest: mirror -->\n\n```bash\nllmtraces list\n```\n", "right before its block"),
    ("<!-- doctest: mirror -->\n", "no block after it"),
    ("```bash\nllmtraces list\n", "never closed"),
])
def test_the_convention_is_parsed_strictly(tmp_path: Path, text: str, error: str):
    with pytest.raises(ValueError, match=re.escape(error)):
        parse(_doc(tmp_path, text))


def test_command_lines_and_shown_output(tmp_path: Path):
    shell, output, data = parse(_doc(tmp_path, (
        '<!-- doctest: mirror given="a.csv ~/b.csv" sub="http://h -> {mirror}" -->\n'
        "```bash\nllmtraces convert a.csv \\\n    -o b.parquet   # a comment\n"
        "# only a comment\npip install x && llmtraces demo\n```\n\n"
        "```\n$ llmtraces convert bad.csv\nError: bad.csv:3: ...\n(got '-4')\n```\n\n"
        "```\na,b\n1,2\n```\n")))
    assert shell.options == Options(mirror=True, given=("a.csv", "~/b.csv"),
                                    sub=(("http://h", "{mirror}"),))
    assert commands(shell) == [Command(3, "llmtraces convert a.csv -o b.parquet"),
                               Command(6, "pip install x && llmtraces demo")]
    assert commands(output) == [Command(10, "llmtraces convert bad.csv",
                                        ("Error: bad.csv:3: ...", "(got '-4')"))]
    assert runs(shell) and runs(output) and not runs(data)
    cmd = commands(output)[0]
    check_output(cmd, "Error: bad.csv:3: error: ContextTokens:\n negative (got '-4')\n", output)
    with pytest.raises(pytest.fail.Exception, match="lacks the documented"):
        check_output(cmd, "Error: bad.csv:4: error: (got '-4')", output)


def test_a_failing_line_is_named_and_downloads_need_the_mirror_mark(
        tmp_path: Path, world: World, monkeypatch: pytest.MonkeyPatch, home: Path):
    doc = _doc(tmp_path, "```bash\nllmtraces list\nllmtraces fetch burstgpt --trace 1\n```\n\n"
                         "<!-- doctest: mirror -->\n```bash\nllmtraces fetch burstgpt --trace 1"
                         "\n```\n")
    offline, mirrored = parse(doc)
    run = DocRun(doc, world, tmp_path / "run", monkeypatch)
    with pytest.raises(pytest.fail.Exception, match=r"x\.md:3: `llmtraces fetch burstgpt "
                       r"--trace 1` exited 1:\n.*offline mode forbids"):
        run.run(offline)
    run.run(mirrored)
    assert (home / "raw" / "burstgpt" / "BurstGPT_1.csv").read_bytes() == \
        STAND_INS[("burstgpt", "1")].read_bytes()
