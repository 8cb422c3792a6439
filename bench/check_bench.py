"""`meshbot check all` on a simulated mesh of ~2,000 pods with 20 ms added to every API request,
side by side with the guide's own kubectl commands for the same facts, run one after another.

    python bench/check_bench.py [--latency-ms 20] [--log-sample 100]

The simulator runs in its own process. The kubectl sequence reads every sidecar's log one pod at a
time; with thousands of pods that takes many minutes, so it times --log-sample of them and
extrapolates linearly to all (the figure says so). Use --log-sample 0 to read them all.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "kubesim/scenarios/istio-0.8.0-healthy.yaml"
REPLICAS = {"default/productpage-v1": 700, "default/details-v1": 400, "default/ratings-v1": 300,
            "default/reviews-v1": 200, "default/reviews-v2": 200, "default/reviews-v3": 190}


def start_simulator(workdir: Path, latency_ms: float):
    scenario = workdir / "bench-2000-pods.yaml"
    scenario.write_text(yaml.safe_dump({
        "description": "istio-0.8.0-healthy with ~2,000 pods", "extends": str(BASE),
        "workloads": {k: {"replicas": v} for k, v in REPLICAS.items()}}))
    kubeconfig = workdir / "kubeconfig"
    proc = subprocess.Popen([sys.executable, "-m", "kubesim", str(scenario), "--latency-ms", str(latency_ms),
                             "--kubeconfig", str(kubeconfig)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    url = proc.stdout.readline().strip()  # printed once the server listens
    return proc, url, kubeconfig


def stats(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/_kubesim/stats") as answer:
        return json.load(answer)


def run_meshbot(kubeconfig: Path) -> dict:
    started = time.perf_counter()
    meshbot = str(Path(sys.executable).with_name("meshbot"))
    done = subprocess.run([meshbot, "check", "all", "--kubeconfig", str(kubeconfig), "--json"],
                          capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    report = json.loads(done.stdout)
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"wall_s": wall, "run_ms": report["duration_ms"], "peak_rss_mb": peak_kb / 1024,
            "statuses": {r["check"]: r["status"] for r in report["results"]}}


def kubectl_sequence(kubeconfig: Path, log_sample: int) -> dict:
    """The guide's commands, one after another, for the facts `check all` reads."""
    ns = "istio-system"

    def k(*args) -> str:
        done = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True)
        return done.stdout

    started = time.perf_counter()
    calls = 0
    raw = "/api/v1/namespaces/istio-system/services/{}/proxy/{}"
    commands = [
        ["get", "po", "-n", ns],                                           # find the ingress pod
        ["get", "--raw", raw.format("istio-pilot:8080", "v1/registration")],  # curl Pilot's registration API
        ["get", "--raw", raw.format("istio-telemetry:9093", "metrics")],   # grpc_server_handled_total
        ["get", "rules", "--all-namespaces"],
        ["get", "prometheuses.config.istio.io", "--all-namespaces"],
        ["get", "metrics.config.istio.io", "--all-namespaces"],
        ["get", "--raw", raw.format("istio-telemetry:9093", "metrics")],   # mixer_config_* (port-forward again)
        ["get", "--raw", raw.format("istio-telemetry:9093", "metrics")],   # mixer_runtime_dispatch_count
        ["-n", ns, "get", "job", "istio-mixer-post-install"],
        ["-n", ns, "get", "pod", "-l", "app=prometheus", "-o", "jsonpath={.items[0].metadata.name}"],
        ["-n", ns, "get", "configmap", "prometheus", "-o", "yaml"],        # the /config page
        ["get", "--raw", "/api/v1/namespaces/istio-system/services/prometheus:9090/proxy/api/v1/targets"],
        ["-n", ns, "get", "configmap", "istio", "-o", "yaml"],             # authPolicy, refresh delays
        ["-n", ns, "get", "deploy"],                                       # is istio-citadel running
        ["get", "svc", "--all-namespaces", "-o", "wide"],                  # headless services
        ["get", "mutatingwebhookconfiguration", "istio-sidecar-injector", "-o", "yaml"],
        ["get", "namespace", "-L", "istio-injection"],
        ["-n", "kube-system", "get", "pod", "-l", "component=kube-apiserver", "-o", "yaml"],
        ["get", "nodes", "-o", "yaml"],                                    # heartbeats vs date
    ]
    for command in commands:
        k(*command)
        calls += 1
    mixer = k("-n", ns, "get", "pod", "-l", "istio=mixer,istio-mixer-type=telemetry", "-o",
              "jsonpath={.items[0].metadata.name}")
    k("-n", ns, "logs", mixer, "-c", "mixer")
    apiserver = k("-n", "kube-system", "get", "pod", "-l", "component=kube-apiserver", "-o",
                  "jsonpath={.items[0].metadata.name}")
    k("-n", "kube-system", "logs", apiserver)
    pods = json.loads(k("get", "pods", "--all-namespaces", "-o", "json"))["items"]  # sidecar args, restarts
    calls += 5
    fixed = time.perf_counter() - started
    sidecars = [p for p in pods if any(c["name"] == "istio-proxy" for c in p["spec"]["containers"])]
    sample = sidecars if not log_sample else sidecars[:log_sample]
    logs_started = time.perf_counter()
    for pod in sample:  # ulimit asserts and 426s, one pod at a time
        k("-n", pod["metadata"]["namespace"], "logs", pod["metadata"]["name"], "-c", "istio-proxy", "--tail", "300")
    per_log = (time.perf_counter() - logs_started) / max(len(sample), 1)
    return {"fixed_s": fixed, "commands": calls + len(sidecars), "sidecars": len(sidecars),
            "logs_timed": len(sample), "per_log_s": per_log, "total_s": fixed + per_log * len(sidecars),
            "extrapolated": len(sample) < len(sidecars)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--log-sample", type=int, default=100)
    parser.add_argument("--skip-kubectl", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, kubeconfig = start_simulator(Path(tmp), args.latency_ms)
        try:
            before = stats(url)["requests"]
            meshbot = run_meshbot(kubeconfig)
            after = stats(url)
            print(f"meshbot check all: wall {meshbot['wall_s']:.2f} s (process start to exit), "
                  f"run {meshbot['run_ms'] / 1000:.2f} s, peak RSS {meshbot['peak_rss_mb']:.0f} MB, "
                  f"{after['requests'] - before} API requests, up to {after['most_in_flight']} at once")
            bad = {k: v for k, v in meshbot["statuses"].items() if v not in ("pass", "skip")}
            print(f"  verdicts not pass/skip: {bad or 'none'}")
            if not args.skip_kubectl and shutil.which("kubectl"):
                seq = kubectl_sequence(kubeconfig, args.log_sample)
                how = (f"{seq['logs_timed']} of {seq['sidecars']} sidecar logs timed, rest extrapolated"
                       if seq["extrapolated"] else f"all {seq['sidecars']} sidecar logs read")
                print(f"kubectl sequence: {seq['total_s']:.1f} s for {seq['commands']} commands "
                      f"({seq['fixed_s']:.1f} s fixed + {seq['per_log_s'] * 1000:.0f} ms per sidecar log; {how})")
                print(f"speed-up: {seq['total_s'] / meshbot['wall_s']:.0f}x (wall to wall)")
        finally:
            proc.terminate()
            proc.wait()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
