"""Sidecar logs are read where pod status points, plus one per workload; `--all-pods` reads every one."""

import json
from urllib.parse import parse_qs

import kubesim
from bot.cli import main
from checks.inputs import LOG_LIMIT_BYTES, LOG_TAIL_LINES
from kubesim.scenario import LogRule

FD_ASSERT = "[2018-06-01 10:07:52.735][14236][critical][assert] connection_impl.cc:58] assert failure: fd_ != -1"


def start(tmp_path, replicas: int, faulty_restarts: int | None = None):
    """Bookinfo on 0.5.1 with productpage grown to ``replicas``; optionally one productpage sidecar that ran out
    of file descriptors: the one a plain sample would not pick (the last by name)."""
    scenario = kubesim.load("istio-0.5.1-healthy", {"workloads": {"default/productpage-v1": {"replicas": replicas}}})
    faulty = None
    if faulty_restarts is not None:
        pods = [p for p in scenario.store.list("v1", "pods", "default")
                if p["metadata"]["name"].startswith("productpage-v1-")]
        faulty = max(pods, key=lambda p: p["metadata"]["name"])
        faulty["metadata"]["labels"]["fault"] = "fd"
        scenario.logs.append(LogRule("default", {"fault": "fd"}, "istio-proxy", [FD_ASSERT]))
        for status in faulty["status"]["containerStatuses"]:
            if status["name"] == "istio-proxy" and faulty_restarts:
                status["restartCount"] = faulty_restarts
                status["lastState"] = {"terminated": {"exitCode": 134, "reason": "Error"}}
    sim = kubesim.Simulator(scenario).start()
    return sim, sim.write_kubeconfig(tmp_path / "kubeconfig"), faulty


def run(capsys, kubeconfig, *args) -> dict:
    main(["check", "envoy.fd-exhaustion", "--kubeconfig", str(kubeconfig), "--json", *args])
    [result] = json.loads(capsys.readouterr().out)["results"]
    return result


def log_requests(sim) -> list:
    """Sidecar log reads (the apiserver check reads the kube-apiserver's log too)."""
    return [r for r in sim.requests if r.path.endswith("/log") and "container=istio-proxy" in r.query]


def test_a_sidecar_whose_status_shows_restarts_is_read(tmp_path, capsys):
    sim, kubeconfig, faulty = start(tmp_path, replicas=60, faulty_restarts=3)
    try:
        result = run(capsys, kubeconfig)
        name = f"default/{faulty['metadata']['name']}"
        assert result["status"] == "fail"
        assert any(line.startswith(f"{name}: ") and "fd_ != -1" in line for line in result["evidence"])
        coverage = next(line for line in result["evidence"] if line.startswith("read "))
        # 60 productpage pods + 7 other workloads: the pointed-at pod, then one per other workload
        assert "of 8 of 67 sidecar logs" in coverage and "1 whose status points at trouble" in coverage
        read = log_requests(sim)
        assert len(read) == 8 and sum(name.split("/")[1] in r.path for r in read) == 1
        query = parse_qs(read[0].query)
        assert query["tailLines"] == [str(LOG_TAIL_LINES)] and query["limitBytes"] == [str(LOG_LIMIT_BYTES)]
        assert "sinceSeconds" in query
    finally:
        sim.stop()


def test_all_pods_reads_every_sidecar_and_finds_a_fault_no_signal_points_at(tmp_path, capsys):
    sim, kubeconfig, faulty = start(tmp_path, replicas=60, faulty_restarts=0)
    try:
        sampled = run(capsys, kubeconfig)
        assert sampled["status"] == "pass" and "of 8 of 67 sidecar logs" in sampled["summary"]
        assert "--all-pods" in sampled["summary"]  # the summary says how to read the rest
        before = len(log_requests(sim))
        deep = run(capsys, kubeconfig, "--all-pods")
        assert deep["status"] == "fail" and any(faulty["metadata"]["name"] in line for line in deep["evidence"])
        assert len(log_requests(sim)) - before == 67
        assert any("of 67 of 67 sidecar logs: every sidecar (--all-pods)" in line for line in deep["evidence"])
    finally:
        sim.stop()


POD_LISTS = ("/api/v1/pods", "/apis/metrics.k8s.io/v1beta1/pods")  # what grows with the pod count, by pages


def test_log_requests_do_not_grow_with_the_pod_count(tmp_path, capsys):
    counts = {}
    for replicas in (50, 1200):
        sim, kubeconfig, _ = start(tmp_path, replicas=replicas)
        try:
            main(["check", "all", "--kubeconfig", str(kubeconfig), "--json"])
            capsys.readouterr()
            pod_lists = [r for r in sim.requests if r.path in POD_LISTS]
            counts[replicas] = (len(log_requests(sim)), len(sim.requests) - len(pod_lists), len(pod_lists))
        finally:
            sim.stop()
    assert counts[50][0] == counts[1200][0] == 8  # one sidecar per workload, however many replicas
    assert counts[50][1] == counts[1200][1]  # nothing else grows either, beyond the pod list's pages
    assert counts[1200][2] == 2 * 3  # 1,207 pods and their PodMetrics at 500 a page
