"""The configuration analyzers (`meshbot check config`): findings people can act on, inputs read narrowly."""

import json

import pytest

from bot.cli import main
from checks.analyzers import CODES, MESSAGES, Finding, outcome
from checks.analyzers.all import ANALYZERS
from checks.analyzers.catalogue import PAGES, guide_url
from checks.catalog import ALL_CHECKS


@pytest.fixture
def config_json(simulate, capsys):
    def go(scenario, *args, **overrides):
        sim, kubeconfig = simulate(scenario, **overrides)
        code = main(["check", "config", *args, "--kubeconfig", str(kubeconfig), "--json"])
        return code, json.loads(capsys.readouterr().out)["results"], sim

    return go


def findings(results):
    return [r for r in results if "code" in r]


def test_on_a_healthy_modern_mesh_no_analyzer_fires(config_json):
    code, results, _ = config_json("istio-1.28.0-config-healthy")
    analyzers = {a.id for a in ANALYZERS}
    assert {r["check"] for r in results} >= analyzers
    assert {r["check"]: r["status"] for r in results if r["check"] in analyzers} == dict.fromkeys(analyzers, "pass")
    assert code == 0 and not findings(results)


def test_a_finding_names_the_object_the_field_what_it_points_to_the_code_the_guide_and_a_real_fix(config_json):
    code, results, _ = config_json("istio-1.28.0-config-routing")
    [subset] = [r for r in results if r["check"] == "config.vs-destination-subsets"]
    assert code == 1 and subset["status"] == "fail" and subset["code"] == "IST0101"
    assert subset["summary"].startswith(
        "IST0101 VirtualService default/reviews: spec.http[1].route[1].destination.subset")
    assert "reviews+v3" in subset["summary"] and "define v1, v2" in subset["summary"]
    assert subset["objects"] == ["VirtualService default/reviews", "DestinationRule default/reviews",
                                 "DestinationRule default/reviews-staging"]
    # the near miss: v3 exists, but under the DestinationRule of another host
    assert any("reviews-staging" in e and "another host" in e for e in subset["evidence"])
    assert any(e.endswith("/ist0101/") for e in subset["evidence"])
    assert subset["section"] == "503-errors-after-setting-destination-rule"
    assert subset["url"] == ("https://istio.io/latest/docs/ops/common-problems/network-issues/"
                             "#503-errors-after-setting-destination-rule")
    assert "kubectl -n default edit destinationrule reviews" in subset["fix"] and "name: v3" in subset["fix"]
    [host] = [r for r in results if r["check"] == "config.vs-destinations" and r["code"] == "IST0101"]
    assert "did you mean Service default/details?" in host["summary"]
    assert host["objects"] == ["VirtualService default/details", "Service default/detail"]


def test_one_result_per_finding_and_each_check_id_is_an_analyzer_of_the_config_group(config_json):
    _, results, _ = config_json("istio-1.28.0-config-gateways")
    gateways = [r for r in results if r["check"] == "config.vs-gateways"]
    assert sorted((r["code"], r["objects"][0]) for r in gateways) == [
        ("IST0101", "VirtualService default/reviews-ingress"), ("IST0132", "VirtualService default/admin"),
        ("IST0132", "VirtualService default/reviews-ingress"), ("IST0132", "VirtualService default/reviews-public"),
        ("IST0165", "VirtualService default/legacy-route")]
    assert all(c.group == "config" for c in ANALYZERS)


def test_a_namespace_keeps_the_findings_about_it(config_json):
    _, everything, _ = config_json("istio-1.28.0-config-ambient")
    _, orders, _ = config_json("istio-1.28.0-config-ambient", "--namespace", "orders")
    assert {r["objects"][0].split(" ")[1].split("/")[0] for r in findings(everything)} == {"default", "orders", "shop"}
    assert [r["objects"][0] for r in findings(orders)] == ["AuthorizationPolicy orders/orders-readers"]
    passing = [r for r in orders if r["check"] == "config.status-conditions"]
    assert passing[0]["status"] == "pass" and "in namespace orders" in passing[0]["summary"]


def test_a_kind_the_cluster_does_not_serve_skips_and_one_it_may_not_read_errors(config_json):
    faults = [{"path": r"/virtualservices$", "status": 404},
              {"path": r"/destinationrules$", "status": 403}]
    code, results, _ = config_json("istio-1.28.0-config-healthy", faults=faults)
    by = {r["check"]: r for r in results}
    assert by["config.vs-mesh-hosts"]["status"] == "skip"
    assert "virtualservices.networking.istio.io is not served" in by["config.vs-mesh-hosts"]["summary"]
    assert by["config.dr-ca-certificates"]["status"] == "error"
    assert "forbidden" in by["config.dr-ca-certificates"]["summary"]
    assert by["config.dr-ca-certificates"]["summary"].count("destinationrules") >= 1
    assert code == 1


def test_the_analyzers_never_read_a_secret_nor_list_configmaps(simulate, capsys):
    sim, kubeconfig = simulate("istio-1.28.0-config-injection")
    main(["check", *[a.id for a in ANALYZERS], "--kubeconfig", str(kubeconfig), "--json"])
    capsys.readouterr()
    paths = [r.path.split("?")[0] for r in sim.requests]
    assert not [p for p in paths if "/secrets" in p]
    assert not [p for p in paths if p.endswith("/configmaps")]
    assert {p for p in paths if "/configmaps/" in p} == {
        "/api/v1/namespaces/istio-system/configmaps/istio",
        "/api/v1/namespaces/istio-system/configmaps/istio-sidecar-injector"}
    assert len(paths) == len(set(paths)), "each kind is listed once per run, whichever analyzers share it"


def test_the_catalogue_has_a_level_template_and_known_section_for_every_code():
    assert {code for a in ANALYZERS for code in CODES[a.id]} == set(MESSAGES)
    for m in MESSAGES.values():
        assert m.code[:3] in ("IST", "MB0") and m.level in ("Error", "Warning", "Info")
        assert m.section is None or m.section in PAGES, m.code
    for a in ANALYZERS:
        assert a.section in PAGES, a.id
        assert a in ALL_CHECKS


def test_every_guide_section_the_analyzers_name_is_a_builtin_entry_at_the_same_url():
    from knowledge import ENTRIES

    urls = {e.section: e.url for e in ENTRIES}
    for section in PAGES:
        assert urls.get(section) == guide_url(section), section


def test_a_meshbot_code_says_no_istioctl_code_exists():
    f = Finding("Service", "shop", "inventory", "MB0004", {"ref": "shop/w"}, "istioctl waypoint apply -n shop")
    out = outcome(f, "make-sure-the-policy-is-applied-to-the-correct-target")
    assert out.code == "MB0004" and out.objects == ("Service shop/inventory",)
    assert out.evidence[-1].startswith("meshbot rule MB0004 WaypointNotFound") and "no istioctl" in out.evidence[-1]
