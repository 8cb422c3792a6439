"""One grid: every check over every scenario, through `meshbot check all --json`."""

import json
import re

import pytest

import kubesim
from bot.cli import main
from checks.catalog import ALL_CHECKS

PLACEHOLDER = re.compile(r"\b(NAMESPACE|NS|POD)\b(?!:)|<[a-z][a-z-]*>")  # NS: is a custom-columns header
GENERATIONS = {c.id: {g.value for g in c.generations} for c in ALL_CHECKS}
CONTRACT = {"check", "title", "section", "status", "summary", "evidence", "fix"}
OPTIONAL = {"code", "objects", "url"}
WORST_FIRST = ("fail", "error", "warn", "pass", "skip")


def worst(results: list[dict]) -> dict[str, str]:
    """check id → its worst status: a check may give several results (one per configuration finding)."""
    out: dict[str, str] = {}
    for r in results:
        seen = out.get(r["check"])
        if seen is None or WORST_FIRST.index(r["status"]) < WORST_FIRST.index(seen):
            out[r["check"]] = r["status"]
    return out


@pytest.mark.parametrize("name", kubesim.scenario.names())
def test_every_check_gives_the_expected_verdict(name, simulate, capsys):
    sim, kubeconfig = simulate(name)
    code = main(["check", "all", "--kubeconfig", str(kubeconfig), "--json"])
    report = json.loads(capsys.readouterr().out)

    generation = report["istio"]["generation"]
    verdicts = worst(report["results"])
    expected = {
        check: sim.scenario.expect.get(check, "pass" if generation in GENERATIONS[check] else "skip")
        for check in GENERATIONS
    }
    assert verdicts == expected
    assert code == (1 if {"fail", "error"} & set(verdicts.values()) else 0)
    for result in report["results"]:
        if result["status"] in ("fail", "warn"):
            assert result["evidence"], result
            assert result["fix"].strip(), result
            assert not PLACEHOLDER.search(result["fix"]), result  # the bot knows the names: it gives them
        assert set(result) <= CONTRACT | OPTIONAL, result
        if "code" in result and result["status"] != "skip":  # a finding: its code, then `Kind namespace/name`
            assert result["summary"].startswith(f"{result['code']} {result['objects'][0]}: "), result


def test_each_check_has_a_scenario_where_it_does_not_pass():
    caught = {check for name in kubesim.scenario.names() for check in kubesim.load(name).expect}
    assert caught == set(GENERATIONS)


def test_a_healthy_run_names_the_version_and_generation(simulate, capsys):
    _, kubeconfig = simulate("istio-0.8.0-healthy")
    main(["check", "mixer", "--kubeconfig", str(kubeconfig), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["istio"] == {"version": "0.8.0", "generation": "0.8"}
    assert {r["check"] for r in report["results"]} == {c.id for c in ALL_CHECKS if c.group == "mixer"}
    assert isinstance(report["duration_ms"], int)


@pytest.mark.parametrize("name, section", [
    ("istio-1.28.0-webhook-unreachable", "errors-in-deployment-status"),
    ("blind-modern-1.28.0-injector-ca-from-gitops", "x509-certificate-related-errors"),
    ("blind-modern-1.22.1-apiserver-egress-proxy",
     "automatic-sidecar-injection-fails-if-the-kubernetes-api-server-has-proxy-settings"),
])
def test_a_refused_pod_quotes_the_subsection_of_its_cause(name, section, simulate, capsys):
    _, kubeconfig = simulate(name)
    main(["check", "injection", "--kubeconfig", str(kubeconfig), "--json"])
    [result] = [r for r in json.loads(capsys.readouterr().out)["results"] if r["check"] == "injection.failed-create"]
    assert (result["status"], result["section"]) == ("fail", section)
