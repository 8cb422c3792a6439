"""Recovery under chaos: distinct `/mesh check` commands while workers are SIGKILLed with their work-horses,
Redis is killed and restarted from its append-only file, and Slack answers bursts of 429s and 5xx.

    python bench/recovery_bench.py [--runs 3] [--commands 60] [--workers 3] [--kills 6] [--redis-restarts 1]
                                   [--latency-ms 20] [--seed 12]

Each run is tests/bot/chaos.py's (the same as tests/bot/test_recovery.py runs in CI), with seed, seed+1, ….
It needs `redis-server` on the PATH (it starts its own, on a free loopback port, in a temporary directory).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "bot")]

import chaos  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--commands", type=int, default=60)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--redis-restarts", type=int, default=1)
    parser.add_argument("--latency-ms", type=float, default=20)
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()
    recoveries, failed = [], 0
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="meshbot-recovery-") as tmp:
            began = time.monotonic()
            figures = chaos.run(Path(tmp), commands=args.commands, workers=args.workers, kills=args.kills,
                                redis_restarts=args.redis_restarts, latency_ms=args.latency_ms, seed=args.seed + i)
            print(f"run {i + 1} (seed {args.seed + i}, {time.monotonic() - began:.1f} s with teardown): "
                  f"{figures.summary()}", flush=True)
            recoveries += figures.recovery_s
            failed += bool(figures.lost or figures.duplicated)
    if recoveries:
        recoveries.sort()
        print(f"recovery after a kill over {len(recoveries)} kills: median {recoveries[len(recoveries) // 2]:.1f} s, "
              f"max {recoveries[-1]:.1f} s; runs with a lost or duplicated answer: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
