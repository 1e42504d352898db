"""``python -m bench`` (``make bench``): every benchmark, one after the other.

Each writes its section of docs/benchmarks.md, as when it runs alone (``python -m
bench.scan`` …). ``--quick`` runs each at a small size and writes nothing; ``--only NAME``
(repeatable) picks benchmarks.
"""

from __future__ import annotations

import argparse
import importlib
import time
from collections.abc import Callable, Sequence

#: name -> the arguments of a quick run.
BENCHMARKS: dict[str, list[str]] = {
    "scan": ["--quick"],
    "ingest": ["--quick"],
    "replay": ["--quick"],
    "queries": ["--quick"],
    "load": ["--quick"],
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen benchmarks; the exit status is the first failure's, else 0."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small runs; write no docs")
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), default=[])
    args = parser.parse_args(argv)
    status = 0
    for name in args.only or list(BENCHMARKS):
        run: Callable[[list[str]], int | None] = importlib.import_module(f"bench.{name}").main
        started = time.perf_counter()
        print(f"== bench.{name}", flush=True)
        result = run(BENCHMARKS[name] if args.quick else [])
        print(f"== bench.{name}: {time.perf_counter() - started:.0f} s", flush=True)
        status = status or int(result or 0)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
