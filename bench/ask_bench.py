"""Measure `Index.ask` on tests/data/ask_eval.yaml.

    python bench/ask_bench.py [--guide PATH_OR_URL]... [--builtin-only] [-v]

Reports top-1 and top-3 accuracy over the on-topic questions, the share of
off-topic questions rejected (no match), and the time per answer after the
index is loaded.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from knowledge import load_index  # noqa: E402

EVAL = ROOT / "tests" / "data" / "ask_eval.yaml"
SHARED_GUIDE = ROOT.parent / "shared" / "guides" / "istio-troubleshooting.md"


def evaluate(index, questions, verbose=False) -> dict:
    """Score an index on eval entries; returns the figures (shares in 0..1)."""
    on = [q for q in questions if q["expect"] is not None]
    off = [q for q in questions if q["expect"] is None]
    top1 = top3 = rejected = 0
    by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    misses = []
    started = time.perf_counter()
    for q in questions:
        got = [m.section for m in index.ask(q["q"], limit=3)]
        if q["expect"] is None:
            ok = not got
            rejected += ok
        else:
            ok = bool(got) and got[0] == q["expect"]
            top1 += ok
            top3 += q["expect"] in got
        by_kind[q.get("kind", "?")][0] += ok
        by_kind[q.get("kind", "?")][1] += 1
        if not ok:
            misses.append((q["q"], q["expect"], got))
    elapsed = time.perf_counter() - started
    if verbose:
        for text, expect, got in misses:
            print(f"MISS {text!r}\n     expected {expect}\n     got      {got}")
    return {
        "questions": len(questions),
        "on_topic": len(on),
        "off_topic": len(off),
        "top1": top1 / len(on) if on else 0.0,
        "top3": top3 / len(on) if on else 0.0,
        "rejected": rejected / len(off) if off else 0.0,
        "ms_per_answer": 1000 * elapsed / len(questions),
        "by_kind": {k: v[0] / v[1] for k, v in sorted(by_kind.items())},
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guide", action="append", help="guide path or URL (repeatable)")
    parser.add_argument("--builtin-only", action="store_true", help="no guide at all")
    parser.add_argument("--eval", default=str(EVAL))
    parser.add_argument("-v", "--verbose", action="store_true", help="print each miss")
    args = parser.parse_args(argv)
    guides = [] if args.builtin_only else (args.guide or [str(SHARED_GUIDE)])
    questions = yaml.safe_load(Path(args.eval).read_text())["questions"]

    started = time.perf_counter()
    index = load_index(guides)
    load_ms = 1000 * (time.perf_counter() - started)
    r = evaluate(index, questions, args.verbose)

    print(f"guides: {', '.join(guides) or '(none: built-in knowledge only)'}")
    print(f"questions: {r['questions']} ({r['on_topic']} on topic, {r['off_topic']} off topic)")
    print(f"top-1 accuracy:    {r['top1']:.1%}")
    print(f"top-3 accuracy:    {r['top3']:.1%}")
    print(f"off-topic rejected: {r['rejected']:.1%}")
    print(f"time per answer:   {r['ms_per_answer']:.2f} ms (index load {load_ms:.0f} ms)")
    print("by kind: " + ", ".join(f"{k} {v:.0%}" for k, v in r["by_kind"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
