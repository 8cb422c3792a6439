"""Per-code figures of `meshbot check config` against istioctl analyze's own test cases, and meshbot's own cases.

    python bench/analyzers_reference.py

Each case of tests/data/analyzers_reference.yaml whose analyzer meshbot answers (kubesim.reference.COVERED) is
loaded as a simulated cluster and checked with `meshbot check config --json`; its expected messages are counted
per code as found or missed, and meshbot's messages that the case does not expect as false alarms (split into
those on the cases that expect no message at all and the others). Codes of upstream analyzers meshbot does not
answer are listed with why. tests/data/analyzers_own.yaml's scenarios are counted the same way, over every
analyzer. The tables are Markdown, for bench/README.md.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import kubesim  # noqa: E402
from bot.cli import main  # noqa: E402
from checks.analyzers.all import ANALYZERS  # noqa: E402
from kubesim.reference import COVERED, NOT_COVERED, case_scenario, compared, found_messages, live_name  # noqa: E402


def check_config(scenario) -> dict:
    with kubesim.Simulator(scenario) as sim, tempfile.TemporaryDirectory() as tmp:
        kubeconfig = sim.write_kubeconfig(Path(tmp) / "kubeconfig")
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            main(["check", "config", "--kubeconfig", str(kubeconfig), "--json"])
    return json.loads(out.getvalue())


def tally(rows: dict, expected: list[str], found: list[str]) -> None:
    exp, got = Counter(expected), Counter(found)
    for message, n in exp.items():
        code = message.split(" ")[0]
        rows[code]["expected"] += n
        rows[code]["found"] += min(n, got[message])
    where = "false alarms (other cases)" if expected else "false alarms (clean cases)"
    for message in (got - exp).elements():
        rows[message.split(" ")[0]][where] += 1


def table(rows: dict, columns: list[str]) -> str:
    lines = ["| code | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]
    for code in sorted(rows):
        lines.append(f"| {code} | " + " | ".join(str(rows[code][c]) for c in columns) + " |")
    total = {c: sum(rows[code][c] for code in rows) for c in columns}
    lines.append("| **all** | " + " | ".join(f"**{total[c]}**" for c in columns) + " |")
    return "\n".join(lines)


def main_() -> int:
    cases = yaml.safe_load((ROOT / "tests/data/analyzers_reference.yaml").read_text())["cases"]
    rows: dict = defaultdict(Counter)
    clean = covered = 0
    uncovered: dict[str, Counter] = defaultdict(Counter)
    for case in cases:
        if case["analyzer"] not in COVERED:
            for m in case["expected"]:
                uncovered[case["analyzer"]][m.split(" ")[0]] += 1
            continue
        covered += 1
        expected, other = compared(case)
        for m in other:
            uncovered[case["analyzer"] + " (code not compared)"][m.split(" ")[0]] += 1
        clean += not expected
        found = found_messages(check_config(case_scenario(case["files"], case.get("mesh_config"))), case["analyzer"])
        tally(rows, expected, found)
    columns = ["expected", "found", "false alarms (clean cases)", "false alarms (other cases)"]
    print(f"istioctl analyze's test cases: {covered} of {len(cases)} run ({clean} expect no message), "
          f"{len(cases) - covered} answered by no meshbot analyzer\n")
    print(table(rows, columns))
    print("\nNot compared (expected messages per code):\n")
    for analyzer, codes in sorted(uncovered.items()):
        why = NOT_COVERED.get(analyzer, "meshbot does not emit this code")
        print(f"- {analyzer}: {', '.join(f'{c}×{n}' for c, n in sorted(codes.items())) or 'none'} — {why}")

    own = yaml.safe_load((ROOT / "tests/data/analyzers_own.yaml").read_text())
    ids = {a.id for a in ANALYZERS}
    rows = defaultdict(Counter)
    for name, expected in own.items():
        report = check_config(kubesim.load(name))
        found = [f"{r['code']} {r['objects'][0]}" for r in report["results"] if r["check"] in ids and r.get("code")]
        tally(rows, [live_name(m) for m in expected or []], found)
    print(f"\nmeshbot's own cases: {len(own)} scenarios ({sum(not v for v in own.values())} expect no message)\n")
    print(table(rows, columns))
    return 0


if __name__ == "__main__":
    sys.exit(main_())
