#!/usr/bin/env python3
"""Write a large CSV in the BurstGPT release layout, for the conversion benchmarks.

The values are synthetic (Gamma inter-arrivals, heavy-tailed lengths, ~2% zero responses as
failures), the layout is the real one: BurstGPT_1.csv's six columns ``Timestamp,Model,Request
tokens,Response tokens,Total tokens,Log Type`` or, with ``--v3``, BurstGPT_3.csv's eight
(``Session ID`` and ``Elapsed time`` added). Same seed, same bytes.

usage: make_burstgpt_like.py OUT.csv [--rows N] [--seed S] [--v3]
"""

from __future__ import annotations

import argparse
import random
import uuid
from typing import TextIO

V1_HEADER = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
V3_HEADER = ("Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens,"
             "Total tokens,Log Type\n")


def write_rows(f: TextIO, rows: int, seed: int, v3: bool) -> None:
    """Write ``rows`` BurstGPT-shaped records (header included) to ``f``."""
    rng = random.Random(seed)
    t = 0.0
    sessions: list[str] = []
    f.write(V3_HEADER if v3 else V1_HEADER)
    for _ in range(rows):
        t += rng.gammavariate(0.5, 2.0)
        model = "ChatGPT" if rng.random() < 0.9 else "GPT-4"
        conv = rng.random() < 0.05
        log = "Conversation log" if conv else "API log"
        req = min(max(1, int(rng.paretovariate(1.1) * 60)), 32000)
        resp = 0 if rng.random() < 0.02 else max(1, int(rng.lognormvariate(5.0, 1.0)))
        if not v3:
            f.write(f"{int(t)},{model},{req},{resp},{req + resp},{log}\n")
            continue
        sid = ""
        if conv:
            if not sessions or rng.random() < 0.4:
                sessions.append(str(uuid.UUID(int=rng.getrandbits(128))))
            sid = sessions[-1 - int(rng.random() * min(len(sessions), 50))]
        elapsed = round(0.2 + resp * rng.uniform(0.01, 0.05), 3)
        f.write(f"{round(t, 3)},{sid},{elapsed},{model},{req},{resp},{req + resp},{log}\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--rows", type=int, default=1_429_737)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--v3", action="store_true", help="BurstGPT_3's 8-column layout")
    a = ap.parse_args()
    with open(a.out, "w", newline="", encoding="utf-8") as f:
        write_rows(f, a.rows, a.seed, a.v3)


if __name__ == "__main__":
    main()
