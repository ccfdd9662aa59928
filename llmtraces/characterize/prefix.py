"""Prefix reuse from ``hash_ids``: what a prefix cache of KV blocks would have served.

A request's blocks are its ``hash_ids`` (Mooncake's: one id per ``hash_block_size`` tokens,
equal ids meaning equal prefixes). Its hit is the longest run of its leading blocks that the
cache holds when it arrives, in tokens ``min(k * block, input_tokens)``; then all its blocks
enter the cache. With an infinite cache, in file order, that gives two ratios (the Mooncake
paper's "cache ratio" does not say which it is): token-weighted, sum(hits) / sum(inputs), and
request-mean, mean(hit / input). A second pass replays the same requests against LRU caches
of a few capacities, given as shares of the distinct blocks.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from .model import CachePoint, Prefix

#: LRU capacities, as shares of the trace's distinct blocks (1.0 holds them all: no eviction).
CAPACITY_SHARES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def requests(ids: pa.Array, block: pa.Array, inputs: pa.Array
             ) -> Iterator[tuple[list[int], int, int]]:
    """(block ids, block size, input tokens) of each row with hash_ids and a block size."""
    lengths = pc.list_value_length(ids).to_pylist()
    values = ids.flatten().to_pylist()
    pos = 0
    for n, size, inp in zip(lengths, block.to_pylist(), inputs.to_pylist(), strict=True):
        if n is None:
            continue
        row = values[pos:pos + n]
        pos += n
        if size is not None:
            yield row, size, inp


def leading(row: list[int], held: set[int] | OrderedDict[int, None]) -> int:
    """How many of ``row``'s first blocks ``held`` has, in a run from the first."""
    k = 0
    for h in row:
        if h not in held:
            break
        k += 1
    return k


class PrefixPass:
    """The infinite-cache pass: distinct blocks seen, hits and inputs summed."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.rows = self.blocks = self.input_tokens = self.hit_tokens = 0
        self.ratio_sum = 0.0
        self.ratio_rows = 0
        self.sizes: set[int] = set()

    def add(self, ids: pa.Array, block: pa.Array, inputs: pa.Array) -> None:
        """Take the next rows' ``hash_ids``, ``hash_block_size`` and ``input_tokens``."""
        if ids.null_count == len(ids):
            return
        seen = self.seen
        for row, size, inp in requests(ids, block, inputs):
            hit = min(leading(row, seen) * size, inp)
            seen.update(row)
            self.rows += 1
            self.blocks += len(row)
            self.input_tokens += inp
            self.hit_tokens += hit
            self.sizes.add(size)
            if inp > 0:
                self.ratio_sum += hit / inp
                self.ratio_rows += 1

    def result(self, again: Iterable[pa.RecordBatch] | None) -> Prefix | None:
        """The summary, with the LRU curve from ``again`` (a second read of hash_ids,
        hash_block_size and input_tokens); None when no row has hash_ids."""
        if not self.rows:
            return None
        distinct = len(self.seen)
        curve = lru_curve(again, distinct) if again is not None else []
        return Prefix(
            requests=self.rows, block_sizes=sorted(self.sizes), blocks=self.blocks,
            distinct_blocks=distinct, input_tokens=self.input_tokens,
            hit_tokens=self.hit_tokens,
            token_hit_ratio=self.hit_tokens / self.input_tokens if self.input_tokens else None,
            request_mean_hit_ratio=(self.ratio_sum / self.ratio_rows if self.ratio_rows
                                    else None),
            lru=curve)


def lru_curve(batches: Iterable[pa.RecordBatch], distinct: int,
              shares: tuple[float, ...] = CAPACITY_SHARES) -> list[CachePoint]:
    """Token-weighted hit ratio of LRU caches holding ``share * distinct`` blocks each.

    A request's blocks are used from the last to the first, so that under pressure a
    prefix's tail is evicted before its head (the order vLLM's prefix cache frees them).
    """
    caps = sorted({max(1, round(s * distinct)) for s in shares})
    caches: list[OrderedDict[int, None]] = [OrderedDict() for _ in caps]
    hits = [0] * len(caps)
    total = 0
    for batch in batches:
        for row, size, inp in requests(batch.column("hash_ids"),
                                       batch.column("hash_block_size"),
                                       batch.column("input_tokens")):
            total += inp
            for i, (cap, cache) in enumerate(zip(caps, caches, strict=True)):
                hits[i] += min(leading(row, cache) * size, inp)
                for h in reversed(row):
                    if h in cache:
                        cache.move_to_end(h)
                    else:
                        cache[h] = None
                        if len(cache) > cap:
                            cache.popitem(last=False)
    return [CachePoint(capacity_blocks=cap, capacity_share=cap / distinct,
                       token_hit_ratio=hit / total if total else 0.0)
            for cap, hit in zip(caps, hits, strict=True)]
