"""LMSys-Chat-1M Parquet shards (``lmsys/lmsys-chat-1m`` on the Hugging Face Hub, gated).

``lmsys-chat-parquet``: one row per conversation with ``conversation_id`` (string), ``model``
(string), ``conversation`` (list of ``{content, role}`` messages, user and assistant
alternating, user first), ``turn`` (int64, the number of user messages), ``language``
(string), ``openai_moderation`` (one ``{categories, category_scores, flagged}`` per message)
and ``redacted`` (bool).

Each conversation becomes a session and each user message one request: turn *k* (from 0)
sends the whole history (every earlier user and assistant message) plus user message *k*,
and gets assistant message *k* back. The dataset has no token counts, so they are counted
with the tokenizer the user picks (``--tokenizer``, default ``o200k_base``; see
:mod:`llmtraces.tokenize`): ``input_tokens`` is the sum of the token counts of those
messages' ``content`` (content only: no chat template, role names or separators),
``output_tokens`` the count of assistant message *k*, null when the conversation ends on a
user message without a reply. Each message is tokenised once; the history sums are running
totals.

No message text is copied into the output: the LMSys-Chat-1M licence forbids redistribution,
so the text stays in the native shard. ``extra`` keeps the per-request native fields that
have no column: ``language``, ``redacted``, the moderation ``flagged`` of user message *k* and
assistant message *k*, the moderation categories that are true for them (the float
``category_scores`` are not carried), and any column this reader does not know.

The shard is streamed in batches of :data:`BATCH_CONVERSATIONS` conversations
(``ParquetFile.iter_batches``, without pyarrow's whole-file pre-buffering), so memory is
bounded by one row group and two batches, not by the shard. Problems are reported with the
file and the 0-based row (= ``source_row``).
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..report import Level
from ..schema import make_batch
from ..text import ReadContext, one_line
from ..timing import TimeSemantics
from . import NativeFormat

if TYPE_CHECKING:
    from ..tokenize import TokenCounter

REQUIRED = ("conversation_id", "model", "conversation", "turn")
OPTIONAL = ("language", "openai_moderation", "redacted")
MESSAGE_FIELDS = ("content", "role")
#: Conversations per batch: a few KB of text each in the real shards, so ~5 MB a batch.
BATCH_CONVERSATIONS = 2048
COUNTED = ("content only: input_tokens = sum of the token counts of conversation[i].content "
           "for every earlier message and user message k; output_tokens = count of assistant "
           "message k; each message tokenised on its own, no chat template, role names, "
           "separators or BOS/EOS")

CATEGORIES = ("harassment", "harassment/threatening", "hate", "hate/threatening", "self-harm",
              "self-harm/instructions", "self-harm/intent", "sexual", "sexual/minors",
              "violence", "violence/graphic")
#: The shards' Arrow schema, as the dataset card's ``dataset_info`` declares it.
NATIVE_SCHEMA = pa.schema([
    ("conversation_id", pa.string()),
    ("model", pa.string()),
    ("conversation", pa.list_(pa.struct([("content", pa.string()), ("role", pa.string())]))),
    ("turn", pa.int64()),
    ("language", pa.string()),
    ("openai_moderation", pa.list_(pa.struct([
        ("categories", pa.struct([(c, pa.bool_()) for c in CATEGORIES])),
        ("category_scores", pa.struct([(c, pa.float64()) for c in CATEGORIES])),
        ("flagged", pa.bool_()),
    ]))),
    ("redacted", pa.bool_()),
])

TIME = TimeSemantics(
    kind="none", native_format="no timestamps (conversations collected April-August 2023)",
    resolution="none", origin="none: arrival_us is null (no timing to invent)")


def _is_list(t: pa.DataType) -> bool:
    """A list or large list type."""
    return bool(pa.types.is_list(t) or pa.types.is_large_list(t))


def _struct_names(t: pa.DataType) -> list[str]:
    """Field names of a struct type (none for any other type)."""
    return [t.field(i).name for i in range(t.num_fields)] if pa.types.is_struct(t) else []


def _message_type(schema: pa.Schema) -> pa.DataType | None:
    """The struct type of one message, when ``conversation`` is a list of structs."""
    conv = schema.field("conversation").type
    if not _is_list(conv) or not pa.types.is_struct(conv.value_type):
        return None
    return conv.value_type


def _moderation_paths(pf: pq.ParquetFile) -> list[str]:
    """Parquet leaf paths of ``openai_moderation``'s ``flagged`` and ``categories.*``.

    The float ``category_scores`` are not read. The list's element is called ``element``
    or ``item`` depending on the writer, so the paths come from the file.
    """
    paths = [pf.schema.column(i).path for i in range(pf.metadata.num_columns)]
    out = []
    for path in paths:
        parts = path.split(".")
        if parts[0] == "openai_moderation" and len(parts) >= 4 and parts[1] == "list" and \
                (parts[3:] == ["flagged"] or parts[3] == "categories"):
            out.append(path)
    return out


class _Moderation:
    """Per-message moderation of one batch: ``flagged`` and the names of true categories."""

    def __init__(self, column: pa.Array | None) -> None:
        """Read ``openai_moderation`` of one batch (None when the shard has none)."""
        self.lengths: list[int] = []
        self.flagged: list[bool | None] = []
        self.categories: dict[int, list[str]] = {}
        if column is None:
            return
        self.lengths = pc.fill_null(pc.list_value_length(column), 0).to_pylist()
        flat = column.flatten()
        names = _struct_names(flat.type)
        fields = dict(zip(names, flat.flatten(), strict=True))
        if "flagged" in fields:
            self.flagged = fields["flagged"].to_pylist()
        else:
            self.flagged = [None] * len(flat)
        cats = fields.get("categories")
        if cats is not None:
            for name, arr in zip(_struct_names(cats.type), cats.flatten(), strict=True):
                for j in pc.indices_nonzero(pc.fill_null(arr, False)).to_pylist():
                    self.categories.setdefault(j, []).append(name)


class LMSysChatParquet(NativeFormat):
    """LMSys-Chat-1M Parquet shard: one conversation per row, text only, no timing."""

    name = "lmsys-chat-parquet"
    description = ("LMSys-Chat-1M Parquet shard (conversation_id, model, conversation "
                   "list<struct<content, role>>, turn, language, openai_moderation, redacted)")
    time = TIME
    #: Only LMSys-Chat-1M has this layout: its licence applies to any copy, however named.
    licence_source = "lmsys-chat-1m"

    def sniff(self, first_line: str) -> bool:
        """Never: the shards are Parquet, recognised by :meth:`sniff_parquet`."""
        return False

    def sniff_parquet(self, schema: pa.Schema) -> bool:
        """The LMSys columns, with ``conversation`` a list of ``{content, role}`` structs."""
        if not set(REQUIRED) <= set(schema.names):
            return False
        message = _message_type(schema)
        return message is not None and set(MESSAGE_FIELDS) <= set(_struct_names(message))

    def read(self, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        """Stream the shard as requests, counting tokens with ``ctx.options["tokenizer"]``."""
        try:
            # pre_buffer (pyarrow's default) would cache every row group iter_batches asks
            # for, i.e. the whole shard; buffered column reads keep one row group's pages.
            pf = pq.ParquetFile(ctx.path, pre_buffer=False, buffer_size=1 << 20)
        except (OSError, ValueError, pa.ArrowException) as exc:
            ctx.report.error("structure", ctx.label,
                             f"not a readable Parquet file: {one_line(exc)}")
            return
        columns = self._plan(ctx, pf.schema_arrow)
        if columns is None:
            return
        paths = [c for c in columns if c != "openai_moderation"]
        if "openai_moderation" in columns:
            found = _moderation_paths(pf)
            paths += found
            if not found:
                ctx.report.warning("dropped", ctx.label, "no flagged or categories fields; "
                                   "moderation left null", column="openai_moderation",
                                   value=str(pf.schema_arrow.field("openai_moderation").type))
        unknown = [c for c in columns if c not in REQUIRED + OPTIONAL]
        # Every conversion loads this reader to recognise its file; tokenize loads requests.
        from ..tokenize import load_counter  # lazy: the download stack, for this reader only

        counter = load_counter(ctx.options.get("tokenizer"), workers=ctx.options.get("workers"))
        ctx.meta["tokenizer"] = {**counter.identity, "counted": COUNTED,
                                 "workers": counter.workers}
        start = next_id = 0
        counted = _counted(_checked(pf.iter_batches(batch_size=BATCH_CONVERSATIONS,
                                                    columns=paths)), counter)
        try:
            while True:
                try:
                    prepared = next(counted)
                except StopIteration:
                    break
                except (OSError, ValueError, pa.ArrowException) as exc:  # damaged pages
                    ctx.report.error("structure", ctx.label, "unreadable Parquet data after "
                                     f"conversation {start:,}: {one_line(exc)}", line=start + 1)
                    break
                out = _convert(ctx, prepared, start, next_id, unknown)
                start += prepared.batch.num_rows
                if out.num_rows:
                    next_id += out.num_rows
                    yield out
        finally:
            counted.close()  # waits for a batch being counted before the counter goes
            counter.close()
        ctx.meta.setdefault("native_layout", {}).update(
            conversations=start, requests="one per user message; source_row = conversation row")

    def _plan(self, ctx: ReadContext, schema: pa.Schema) -> list[str] | None:
        """The columns to read, after checking the ones this reader needs."""
        missing = [c for c in REQUIRED if c not in schema.names]
        if missing:
            ctx.report.error("header", ctx.label, f"missing column(s) {missing}; expected the "
                             f"LMSys-Chat-1M columns {', '.join(REQUIRED + OPTIONAL)}",
                             value=", ".join(schema.names))
            return None
        message = _message_type(schema)
        if message is None or not set(MESSAGE_FIELDS) <= set(_struct_names(message)):
            ctx.report.error("type", ctx.label, "expected list<struct<content: string, role: "
                             "string>>", column="conversation",
                             value=str(schema.field("conversation").type))
            return None
        other = [n for n in _struct_names(message) if n not in MESSAGE_FIELDS]
        if other:
            ctx.report.warning("dropped", ctx.label, f"message field(s) {other} have no place "
                               "in the unified schema and are not converted",
                               column="conversation")
        columns = list(REQUIRED) + [c for c in OPTIONAL if c in schema.names]
        for f in schema:
            if f.name in columns:
                continue
            if pa.types.is_nested(f.type):
                ctx.report.warning("dropped", ctx.label, "a nested column this reader does not "
                                   "know is not converted", column=f.name, value=str(f.type))
            else:
                columns.append(f.name)  # a scalar: kept in extra
        return columns


def _problem(ctx: ReadContext, level: Level, code: str, row: int, cid: Any, column: str,
             message: str, value: str | None = None) -> None:
    """Report a problem of one conversation, naming its row and id."""
    add = ctx.report.error if level == "error" else ctx.report.warning
    add(code, ctx.label, f"row {row} (conversation_id {cid!r}): {message}", column=column,
        value=value)


@dataclass
class _Counted:
    """A batch of conversations, its messages flattened, and each message's token count."""

    batch: pa.RecordBatch
    lengths: list[int]
    contents: list[str | None]
    roles: list[str | None]
    counts: list[int]


def _count(batch: pa.RecordBatch, counter: TokenCounter) -> _Counted:
    """Flatten the messages of ``batch`` and count each message's tokens once."""
    conv = batch.column(batch.schema.get_field_index("conversation"))
    lengths = pc.fill_null(pc.list_value_length(conv), 0).to_pylist()
    messages = conv.flatten()
    fields = dict(zip(_struct_names(messages.type), messages.flatten(), strict=True))
    contents: list[str | None] = fields["content"].to_pylist()
    counts = counter.count([c if c is not None else "" for c in contents])
    return _Counted(batch, lengths, contents, fields["role"].to_pylist(), counts)


def _checked(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Each batch once its bytes are known to be valid (a damaged page can hold text that is
    not UTF-8, which pyarrow hands over unchecked): ``ArrowInvalid`` otherwise."""
    for batch in batches:
        batch.validate(full=True)
        yield batch


def _counted(batches: Iterator[pa.RecordBatch], counter: TokenCounter
             ) -> Generator[_Counted, None, None]:
    """Each batch with its counts. With several workers the next batch is counted while the
    caller builds this one's rows (Python work that would otherwise leave the cores idle);
    at most two batches are in hand."""
    if counter.workers == 1:
        yield from (_count(b, counter) for b in batches)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="llmtraces-lmsys") as ahead:
        pending: Future[_Counted] | None = None
        for batch in batches:
            following = ahead.submit(_count, batch, counter)
            if pending is not None:
                yield pending.result()
            pending = following
        if pending is not None:
            yield pending.result()


def _convert(ctx: ReadContext, counted: _Counted, start: int, next_id: int,
             unknown: list[str]) -> pa.RecordBatch:
    """One batch of conversations as unified requests (bad conversations give none)."""
    batch = counted.batch
    lengths, contents, roles, counts = (counted.lengths, counted.contents, counted.roles,
                                        counted.counts)

    def column(name: str) -> list[Any]:
        """A top-level column as Python values (nulls when the shard lacks it)."""
        i = batch.schema.get_field_index(name)
        return batch.column(i).to_pylist() if i >= 0 else [None] * batch.num_rows

    cids, models, turns = column("conversation_id"), column("model"), column("turn")
    languages, redacted = column("language"), column("redacted")
    others = {name: column(name) for name in unknown}
    mi = batch.schema.get_field_index("openai_moderation")
    mod = _Moderation(batch.column(mi) if mi >= 0 else None)

    cols: dict[str, list[Any]] = {k: [] for k in (
        "request_id", "source_row", "input_tokens", "output_tokens", "model", "session_id",
        "turn", "parent_request_id", "extra")}
    offset = mod_offset = 0
    for i in range(batch.num_rows):
        row, cid, size = start + i, cids[i], lengths[i]
        o, mo = offset, mod_offset
        offset += size
        mod_size = mod.lengths[i] if mod.lengths else 0
        mod_offset += mod_size
        if cid is None:
            _problem(ctx, "error", "missing", row, cid, "conversation_id",
                     "conversation_id is null")
            continue
        if size == 0:
            _problem(ctx, "warning", "empty", row, cid, "conversation",
                     "no messages, so no request")
            continue
        bad = next((j for j in range(size)
                    if roles[o + j] != ("user" if j % 2 == 0 else "assistant")), None)
        if bad is not None:
            want = "user" if bad % 2 == 0 else "assistant"
            _problem(ctx, "error", "role", row, cid, "conversation",
                     f"message {bad} has role {roles[o + bad]!r}, expected {want!r} (roles "
                     "must alternate user, assistant, ..., starting with user)",
                     str(roles[o + bad]))
            continue
        users = (size + 1) // 2
        if turns[i] != users:
            _problem(ctx, "warning", "turn", row, cid, "turn",
                     f"turn is {turns[i]} but the conversation has {users} user message(s); "
                     "the requests follow the messages (native turn kept in extra)",
                     str(turns[i]))
        for j in range(size):
            if contents[o + j] is None:
                _problem(ctx, "warning", "null-content", row, cid, "conversation",
                         f"message {j} ({roles[o + j]}) has null content; counted as 0 tokens")
        aligned = mod_size == size and bool(mod.lengths)
        if not aligned and mi >= 0:
            _problem(ctx, "warning", "moderation", row, cid, "openai_moderation",
                     f"{mod_size} moderation result(s) for {size} message(s); flagged left "
                     "null", str(mod_size))
        base: dict[str, Any] = {"language": languages[i], "redacted": redacted[i]}
        history = 0
        for k in range(users):
            u, a = 2 * k, 2 * k + 1
            history += counts[o + u]
            reply = a < size
            rid = next_id + len(cols["request_id"])
            cols["request_id"].append(rid)
            cols["source_row"].append(row)
            cols["input_tokens"].append(history)
            cols["output_tokens"].append(counts[o + a] if reply else None)
            cols["model"].append(models[i])
            cols["session_id"].append(cid)
            cols["turn"].append(k)
            cols["parent_request_id"].append(rid - 1 if k else None)
            if reply:
                history += counts[o + a]
            extra = dict(base)
            extra["user_flagged"] = mod.flagged[mo + u] if aligned else None
            extra["assistant_flagged"] = mod.flagged[mo + a] if aligned and reply else None
            for who, j in (("user", u), ("assistant", a)):
                if aligned and (j < size) and mod.categories.get(mo + j):
                    extra[f"{who}_categories"] = mod.categories[mo + j]
                if j < size and contents[o + j] is None:
                    extra[f"{who}_content_null"] = True
            if turns[i] != users:
                extra["turn"] = turns[i]
            for name, values in others.items():
                extra[name] = values[i]
            cols["extra"].append(json.dumps(extra, ensure_ascii=False, default=str))
    n = len(cols["request_id"])
    return make_batch(n, {**cols, "service": [ctx.service or "conversation"] * n})


FORMATS = (LMSysChatParquet(),)
