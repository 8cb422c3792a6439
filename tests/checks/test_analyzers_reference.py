"""istioctl analyze's own test cases, run as simulated clusters through `meshbot check config`.

tests/data/analyzers_reference.yaml holds the messages Istio's test table expects of each input (provenance in
its header). Each case whose analyzer meshbot answers must give exactly those messages for the codes compared
(kubesim.reference.COVERED), no more, no fewer; a case that expects none is a false-alarm test. meshbot's own
cases (tests/data/analyzers_own.yaml) are compared the same way over every analyzer. bench/analyzers_reference.py
prints the per-code figures (bench/README.md).
"""

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

import kubesim
from bot.cli import main
from checks.analyzers.all import ANALYZERS
from kubesim.reference import COVERED, NOT_COVERED, case_scenario, compared, deduplicated, found_messages

DATA = Path(__file__).parents[1] / "data"
CASES = yaml.safe_load((DATA / "analyzers_reference.yaml").read_text())["cases"]
OWN = yaml.safe_load((DATA / "analyzers_own.yaml").read_text())
ANALYZER_IDS = {a.id for a in ANALYZERS}


def run_config(sim, tmp_path, capsys) -> dict:
    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
    main(["check", "config", "--kubeconfig", str(kubeconfig), "--json"])
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("case", [c for c in CASES if c["analyzer"] in COVERED],
                         ids=lambda c: f"{c['analyzer']}:{c['name']}")
def test_istioctl_reference_case(case, tmp_path, capsys):
    with kubesim.Simulator(case_scenario(case["files"], case.get("mesh_config"))) as sim:
        report = run_config(sim, tmp_path, capsys)
    expected, _ = compared(case)
    found = found_messages(report, case["analyzer"])
    assert Counter(found) == Counter(expected), {"missing": list((Counter(expected) - Counter(found)).elements()),
                                                 "false alarms": list((Counter(found) - Counter(expected)).elements())}
    check = COVERED[case["analyzer"]][0]
    assert all(r["status"] not in ("error", "skip") for r in report["results"] if r["check"] == check)


@pytest.mark.parametrize("name", sorted(OWN))
def test_own_case(name, tmp_path, capsys):
    with kubesim.Simulator(kubesim.load(name)) as sim:
        report = run_config(sim, tmp_path, capsys)
    found = sorted(f"{r['code']} {r['objects'][0]}" for r in report["results"]
                   if r["check"] in ANALYZER_IDS and r.get("code"))
    assert found == sorted(OWN[name] or [])


def test_every_reference_analyzer_is_compared_or_has_a_reason():
    assert {c["analyzer"] for c in CASES} <= set(COVERED) | set(NOT_COVERED)
    assert {check for check, _ in COVERED.values()} <= ANALYZER_IDS


def test_identical_argumentless_messages_count_once_as_istioctl_deduplicates_them():
    assert deduplicated(["IST0151 EnvoyFilter a/b", "IST0151 EnvoyFilter a/b", "IST0101 VirtualService a/b",
                         "IST0101 VirtualService a/b"]) == ["IST0151 EnvoyFilter a/b", "IST0101 VirtualService a/b",
                                                            "IST0101 VirtualService a/b"]
