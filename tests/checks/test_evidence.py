"""Evidence discipline: a damaged or contradicted payload is `error` with its cause, never a diagnosis."""

import json

import pytest

from bot.cli import main
from checks.errors import BadPayload
from checks.metrics import parse

MIXER = "istio-system/istio-mixer:9093"


def test_a_complete_scrape_parses():
    samples = parse("process_start_time_seconds 1\ngo_goroutines 42\nup 1\n", "page",
                    always=("process_start_time_seconds", "go_goroutines"))
    assert [s.line() for s in samples][-1] == "up 1"


@pytest.mark.parametrize("text, cause", [
    ("go_goroutines 42\nup 12", "cut short"),  # the last number may have been 1234
    ('go_goroutines 42\nup{job="mix', "not Prometheus text"),
    ("up 1\n", "lacks process_start_time_seconds, go_goroutines"),
])
def test_a_damaged_scrape_is_a_bad_payload(text, cause):
    with pytest.raises(BadPayload, match=cause):
        parse(text, "page", always=("process_start_time_seconds", "go_goroutines"))


@pytest.fixture
def check_mixer(simulate, capsys):
    def go(**overrides):
        _, kubeconfig = simulate("istio-0.5.1-healthy", **overrides)
        main(["check", "mixer", "--kubeconfig", str(kubeconfig), "--json"])
        return {r["check"]: r for r in json.loads(capsys.readouterr().out)["results"]}

    return go


def test_a_body_shorter_than_its_content_length_is_not_read_as_data(check_mixer):
    results = check_mixer(proxy=[{"service": MIXER, "path": "metrics", "content_length": 999999}])
    for check in ("mixer.report-calls", "mixer.config-resolution", "mixer.prometheus-dispatch"):
        assert results[check]["status"] == "error"
        assert "cut short" in results[check]["summary"]


def test_a_page_missing_the_process_families_is_incomplete(check_mixer):
    results = check_mixer(proxy=[{"service": MIXER, "path": "metrics", "edits": [{"drop": "^process_"}]}])
    assert results["mixer.report-calls"]["status"] == "error"
    assert "lacks process_start_time_seconds" in results["mixer.report-calls"]["summary"]


MIXER_TARGET_DOWN = {
    "service": "istio-system/prometheus:9090", "path": "api/v1/targets",
    "json": {"status": "success", "data": {"droppedTargets": [], "activeTargets": [{
        "discoveredLabels": {"__address__": "10.244.0.21:9093", "job": "mixer"},
        "labels": {"instance": "10.244.0.21:9093", "job": "mixer"},
        "scrapeUrl": "http://10.244.0.21:9093/metrics", "health": "down",
        "lastError": 'text format parsing error in line 212: unexpected end of input stream',
        "lastScrape": "2018-06-01T10:05:44Z"}]}}}


def test_absence_that_prometheus_contradicts_proves_nothing(check_mixer):
    no_reports = {"service": MIXER, "path": "metrics",
                  "edits": [{"drop": 'grpc_method="Report"'}, {"drop": 'adapter="prometheus"'}]}
    results = check_mixer(proxy=[no_reports, MIXER_TARGET_DOWN])
    report = results["mixer.report-calls"]
    assert report["status"] == "error"
    assert "Prometheus reports the same page unparseable" in report["summary"]
    assert "no sidecar" not in report["summary"]


def test_reports_seen_stand_even_when_prometheus_cannot_parse_the_page(check_mixer):
    assert check_mixer(proxy=[MIXER_TARGET_DOWN])["mixer.report-calls"]["status"] == "pass"


def test_a_page_that_contradicts_itself_proves_nothing(check_mixer):
    # Report's handled counter is gone, but its started counter and the Prometheus adapter's dispatches are there
    handled_gone = {"service": MIXER, "path": "metrics", "edits": [{"drop": "^grpc_server_handled_total.*Report"}]}
    report = check_mixer(proxy=[handled_gone])["mixer.report-calls"]
    assert report["status"] == "error" and "contradicts itself" in report["summary"]
