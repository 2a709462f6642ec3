"""The order a matrix runs in: randomized and interleaved, from a seed, so drift and heat favour no cell.

Each repeat is a round that runs every entry once, entries in a shuffled order; within an entry's block its load
points run in a shuffled order. A launched server starts once per block (a start takes minutes for a real server,
and a fresh start per repeat also samples start-up variation), and the next round reshuffles both orders, so no
entry is always first (coldest GPU) or last (warmest).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Block:
    entry: str
    repeat: int  # 1-based
    points: tuple[str, ...]  # in run order


def plan(entries: list[str], points: list[str], repeats: int, seed: int) -> list[Block]:
    rng = random.Random(seed)
    blocks = []
    for r in range(1, repeats + 1):
        for e in rng.sample(entries, len(entries)):
            blocks.append(Block(e, r, tuple(rng.sample(points, len(points)))))
    return blocks
