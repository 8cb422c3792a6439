"""Trouble reading the cluster becomes an `error` result with its cause; the run goes on and stays bounded."""

import json

import pytest

from bot.cli import main
from checks.catalog import ALL_CHECKS
from checks.cluster import Cluster
from checks.errors import without_credentials
from checks.model import Check, Generation, passed
from checks.runner import run


@pytest.fixture
def check_json(simulate, capsys, monkeypatch, tmp_path):
    def go(scenario, *targets, config=None, **overrides):
        if config:
            path = tmp_path / "meshbot.yaml"
            path.write_text(json.dumps(config))
            monkeypatch.setenv("MESHBOT_CONFIG", str(path))
        sim, kubeconfig = simulate(scenario, **overrides)
        code = main(["check", *(targets or ["all"]), "--kubeconfig", str(kubeconfig), "--json"])
        report = json.loads(capsys.readouterr().out)
        return code, {r["check"]: r for r in report["results"]}, sim, report

    return go


@pytest.fixture
def gone(tmp_path):
    """A kubeconfig whose API server does not answer (nothing listens on port 9)."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "gone",
        "clusters": [{"name": "gone", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "gone", "user": {"token": "t"}}],
        "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "gone"}}]}))
    return kubeconfig


def test_forbidden_names_the_missing_permission_and_the_rest_runs(check_json):
    code, results, _, _ = check_json("istio-0.5.1-healthy", faults=[{"path": "^/api/v1/pods$", "status": 403}])
    assert code == 1
    fd = results["envoy.fd-exhaustion"]
    assert fd["status"] == "error"
    assert "may not list pods cluster-wide" in fd["summary"] and "grant list on pods" in fd["summary"]
    assert results["prometheus.scrape-config"]["status"] == "pass"
    assert results["mixer.report-calls"]["status"] == "pass"


def test_forbidden_proxy_names_the_subresource(check_json):
    _, results, _, _ = check_json("istio-0.5.1-healthy", "pilot", faults=[
        {"path": "/services/istio-pilot:8080/proxy", "status": 403}])
    assert results["pilot.registration"]["status"] == "error"
    assert "get services/proxy in namespace istio-system" in results["pilot.registration"]["summary"]


def test_a_kind_that_is_not_installed_is_said_plainly(check_json):
    _, results, _, _ = check_json("istio-0.5.1-healthy", "mixer.metrics-config", faults=[
        {"path": "^/apis/config.istio.io/v1alpha2/rules$", "status": 404}])
    result = results["mixer.metrics-config"]
    assert result["status"] == "fail"
    assert "rules.config.istio.io is not installed" in result["summary"]


def test_server_errors_and_malformed_payloads_are_errors_with_the_cause(check_json):
    _, results, _, _ = check_json("istio-0.5.1-healthy", "pilot", "mixer", faults=[
        {"path": "/services/istio-pilot:8080/proxy", "status": 500},
        {"path": "/services/istio-mixer:9093/proxy/metrics", "body": "{not prometheus text"}])
    assert results["pilot.registration"]["status"] == "error"
    assert "HTTP 500" in results["pilot.registration"]["summary"]
    for check in ("mixer.report-calls", "mixer.config-resolution", "mixer.prometheus-dispatch"):
        assert results[check]["status"] == "error"
        assert "not Prometheus text" in results[check]["summary"]
    assert results["mixer.metrics-config"]["status"] == "pass"


def test_a_slow_endpoint_times_out_and_the_run_stays_within_its_budget(check_json):
    config = {"checks": {"budget_seconds": 3, "request_timeout_seconds": 1}}
    code, results, _, report = check_json("istio-0.5.1-healthy", config=config, faults=[
        {"path": "/services/istio-mixer:9093/proxy/metrics", "delay": 4}])
    assert code == 1
    assert results["mixer.report-calls"]["status"] == "error"
    assert "timed out" in results["mixer.report-calls"]["summary"]
    assert results["pilot.registration"]["status"] == "pass"
    assert report["duration_ms"] < 3500


def test_an_unreachable_cluster_gives_errors_not_a_crash(gone, capsys):
    code = main(["check", "all", "--kubeconfig", str(gone), "--json"])
    results = json.loads(capsys.readouterr().out)["results"]
    assert code == 1
    assert {r["status"] for r in results} == {"error"}
    assert all("cannot reach the API server" in r["summary"] or "Istio version" in r["summary"] for r in results)


def test_a_report_says_when_the_cluster_could_not_be_reached(gone):
    report = run(Cluster.connect("gone", str(gone)), ALL_CHECKS)
    assert report.unreachable and "cannot reach the API server of gone" in report.unreachable


@pytest.mark.parametrize("argv, message", [
    (["check", "all", "--kubeconfig", "/nonexistent/kubeconfig"], "kubeconfig /nonexistent/kubeconfig does not exist"),
    (["check", "mixr"], "unknown check or group 'mixr' (did you mean mixer?)"),
    (["check"], "the following arguments are required"),
])
def test_bad_usage_is_one_clear_line_and_exit_2(argv, message, capsys):
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_an_unknown_context_is_one_clear_line(simulate, capsys):
    _, kubeconfig = simulate("istio-0.5.1-healthy")
    assert main(["check", "all", "--kubeconfig", str(kubeconfig), "--context", "nope"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and len(err.strip().splitlines()) == 1


def test_the_bot_only_reads_and_fetches_each_thing_once_concurrently(check_json):
    # 20 ms per request: with none, a loaded machine may serve each request before the next arrives.
    _, _, sim, _ = check_json("istio-0.8.0-healthy", latency_ms=20)
    assert {r.method for r in sim.requests} == {"GET"}
    fetched = [(r.path, r.query) for r in sim.requests]
    assert len(fetched) == len(set(fetched))
    assert sim.most_in_flight > 1
    secrets = [r for r in sim.requests if "/secrets" in r.path]
    assert all("PartialObjectMetadata" in r.accept for r in secrets)


def test_a_crashing_check_is_an_error_naming_it_and_the_others_run(simulate):
    def explode(ctx):
        raise ZeroDivisionError("division by zero")

    boom = Check("test.boom", "Boom", "nowhere", frozenset(Generation), lambda istio: (), explode)
    calm = Check("test.calm", "Calm", "nowhere", frozenset(Generation), lambda istio: (), lambda ctx: passed("ok"))
    _, kubeconfig = simulate("istio-0.5.1-healthy")
    cluster = Cluster.connect("sim", str(kubeconfig))
    report = run(cluster, [boom, calm, ALL_CHECKS[0]])
    statuses = {r.check: (r.status.value, r.summary) for r in report.results}
    assert statuses["test.boom"] == ("error", "check test.boom crashed: ZeroDivisionError: division by zero")
    assert statuses["test.calm"] == ("pass", "ok")
    assert statuses["pilot.registration"][0] == "pass"


def test_each_check_is_timed_by_its_slowest_input(simulate):
    _, kubeconfig = simulate("istio-0.5.1-healthy", faults=[{"path": "/services/istio-pilot:8080/proxy", "delay": 0.3}])
    report = run(Cluster.connect("sim", str(kubeconfig)), ALL_CHECKS)
    ran = {r.check for r in report.results if r.status.value != "skip"}
    assert set(report.timings) == ran
    assert report.timings["pilot.registration"] >= 0.3 > report.timings["clock.client-skew"]


def test_a_configured_direct_url_replaces_the_api_server_proxy(simulate, tmp_path, monkeypatch, capsys):
    sim, kubeconfig = simulate("istio-0.5.1-healthy")
    mixer = f"{sim.url}/api/v1/namespaces/istio-system/services/istio-mixer:9093/proxy"  # any HTTP base URL
    config = tmp_path / "meshbot.yaml"
    config.write_text(json.dumps({"clusters": {"lab": {
        "kubeconfig": str(kubeconfig), "endpoints": {"istio-mixer:9093": mixer}}}}))
    monkeypatch.setenv("MESHBOT_CONFIG", str(config))
    assert main(["check", "mixer.report-calls", "--cluster", "lab", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["status"] == "pass"
    metrics = [r for r in sim.requests if r.path.endswith("/proxy/metrics")]
    assert len(metrics) == 1 and metrics[0].user_agent.startswith("python-httpx")  # once, by the direct client


def test_a_budget_spent_on_finding_istio_ends_in_errors_not_a_crash(check_json):
    config = {"checks": {"budget_seconds": 1, "request_timeout_seconds": 1}}
    code, results, _, _ = check_json("istio-0.5.1-healthy", config=config, faults=[
        {"path": "/namespaces/istio-system/deployments", "delay": 2}])
    assert code == 1
    assert results["mixer.report-calls"]["status"] == "error"
    assert "time budget" in results["mixer.report-calls"]["summary"]


def test_a_budget_shorter_than_one_request_is_refused(tmp_path, monkeypatch, capsys):
    config = tmp_path / "meshbot.yaml"
    config.write_text(json.dumps({"checks": {"budget_seconds": 1, "request_timeout_seconds": 5}}))
    monkeypatch.setenv("MESHBOT_CONFIG", str(config))
    assert main(["check", "all"]) == 2
    assert "budget_seconds must be at least request_timeout_seconds" in capsys.readouterr().err


def test_forbidden_namespaces_do_not_hide_missing_report_calls(check_json):
    _, results, _, _ = check_json("istio-0.5.1-no-reports", "mixer.report-calls", faults=[
        {"path": "^/api/v1/namespaces$", "status": 403}])
    assert results["mixer.report-calls"]["status"] == "fail"


@pytest.mark.parametrize("text, shown", [
    ("http://bob:S3cret@proxy.corp:3128", "http://***@proxy.corp:3128"),
    ("bob:S3cret@proxy.corp:3128", "***@proxy.corp:3128"),
    ("407, url='http://bob:S3cret@127.0.0.1:8/'", "407, url='http://***@127.0.0.1:8/'"),
    ("http://proxy.corp:3128", "http://proxy.corp:3128"),
])
def test_credentials_never_reach_a_message(text, shown):
    assert without_credentials(text) == shown


def test_proxy_credentials_in_the_api_server_env_are_not_shown(check_json):
    _, results, _, _ = check_json("istio-0.5.1-apiserver-proxy", "injection.apiserver-proxy", apiserver={"env": {
        "https_proxy": "alice:Pa55word@proxy.corp:3128", "no_proxy": "127.0.0.1"}})
    result = results["injection.apiserver-proxy"]
    assert result["status"] == "fail"
    assert "Pa55word" not in json.dumps(result) and "***@proxy.corp:3128" in json.dumps(result)
