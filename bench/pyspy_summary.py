#!/usr/bin/env python3
"""Summarise a py-spy raw profile (collapsed stacks, recorded with ``--threads --idle``).

    py-spy record --idle --threads --format raw --rate 250 -o many.txt -- \
        python bench/bench_spine.py --orders 2000 --only many
    python bench/pyspy_summary.py many.txt [--thread asyncio_ --thread edigw-publisher] [--top 40]

Prints samples per thread, then, for the chosen threads (all by default), the functions with
the most samples inclusive (the function or anything it called) and exclusive (the function
itself). With ``--idle`` a thread waiting in a syscall (fsync, select, a lock) is sampled too,
so an I/O-bound path shows where it waits; ``--busy`` drops stacks that end in a known wait.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_WAITS = ("select (selectors.py", "poll (selectors.py", "wait (threading.py",
          "_worker (concurrent/futures/thread.py", "get (queue.py", "sleep", "PollPoller.poll",
          "_poll (selectors.py", "EpollPoller._poll")


def parse(path: Path) -> list[tuple[str, list[str], int]]:
    out = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        thread = re.sub(r"^thread \(\d+\):?\s*", "", frames[0]) or "?"
        thread = re.sub(r"_\d+$", "_", thread)  # asyncio_0, asyncio_1 … -> asyncio_
        out.append((thread, [re.sub(r":\d+\)$", ")", f) for f in frames[1:]], int(count)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file", type=Path)
    ap.add_argument("--thread", action="append", help="thread name prefix (repeatable)")
    ap.add_argument("--top", type=int, default=35)
    ap.add_argument("--busy", action="store_true", help="drop stacks ending in a known wait")
    ap.add_argument("--rate", type=float, default=250.0, help="samples per second recorded")
    args = ap.parse_args()
    stacks = parse(args.file)
    per_thread: Counter[str] = Counter()
    for thread, _frames, n in stacks:
        per_thread[thread] += n
    print("samples per thread (seconds at --rate):")
    for thread, n in per_thread.most_common():
        print(f"  {n:7d}  {n / args.rate:7.2f} s  {thread}")
    chosen = [s for s in stacks
              if not args.thread or any(s[0].startswith(t) for t in args.thread)]
    if args.busy:
        chosen = [s for s in chosen if s[1] and not any(w in s[1][-1] for w in _WAITS)]
    total = sum(n for _t, _f, n in chosen) or 1
    incl: Counter[str] = Counter()
    excl: Counter[str] = Counter()
    for _thread, frames, n in chosen:
        for f in set(frames):
            incl[f] += n
        if frames:
            excl[frames[-1]] += n
    print(f"\n{total} samples in the chosen threads ({total / args.rate:.2f} s)")
    print("\ninclusive:")
    for f, n in incl.most_common(args.top):
        print(f"  {100 * n / total:5.1f}%  {n / args.rate:6.2f} s  {f}")
    print("\nexclusive:")
    for f, n in excl.most_common(args.top):
        print(f"  {100 * n / total:5.1f}%  {n / args.rate:6.2f} s  {f}")


if __name__ == "__main__":
    main()
