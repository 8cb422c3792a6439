"""`meshbot check all` on a simulated Istio 0.5.1 mesh (or, with --mesh istiod, an Istio 1.28.0 one) of
~2,000 pods (or --pods N) with 20 ms added to every API request, side by side in one run with the guide's
procedure as an engineer runs it with the real `kubectl` against the same simulator.

    python bench/check_bench.py [--mesh mixer|istiod] [--pods 2000] [--runs 5] [--latency-ms 20] [--skip-kubectl]

meshbot and the kubectl sequence take turns (meshbot, kubectl, meshbot, …) so both see the same machine.
The kubectl sequence is the guide's commands in the guide's order, with read-only equivalents where the
guide changes something or opens a port-forward (a GET through the API server's proxy instead of
port-forward + curl), one `kubectl get pods -A -o yaml` (the high-CPU section's "reinject all your
pods" means reading every pod) and three sidecars' logs (nobody reads 2,000 by hand). The machine's load
(`uptime`) is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BASES = {"mixer": ROOT / "kubesim/scenarios/istio-0.5.1-healthy.yaml",
         "istiod": ROOT / "kubesim/scenarios/istio-1.28.0-healthy.yaml"}
SHARES = {"default/productpage-v1": 700, "default/details-v1": 400, "default/ratings-v1": 300,
          "default/reviews-v1": 200, "default/reviews-v2": 200, "default/reviews-v3": 190}  # of 1,990
NS = "istio-system"
PROXY = "/api/v1/namespaces/istio-system/services/{}/proxy/{}"


def start_simulator(workdir: Path, pods: int, latency_ms: float, mesh: str = "mixer"):
    scale = pods / sum(SHARES.values())
    scenario = workdir / f"bench-{pods}-pods.yaml"
    scenario.write_text(yaml.safe_dump({
        "description": f"{BASES[mesh].stem} with ~{pods} pods", "extends": str(BASES[mesh]),
        "workloads": {k: {"replicas": max(1, round(v * scale))} for k, v in SHARES.items()}}))
    kubeconfig = workdir / "kubeconfig"
    proc = subprocess.Popen([sys.executable, "-m", "kubesim", str(scenario), "--latency-ms", str(latency_ms),
                             "--kubeconfig", str(kubeconfig)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    url = proc.stdout.readline().strip()  # printed once the server listens
    return proc, url, kubeconfig


def stats(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/_kubesim/stats") as answer:
        return json.load(answer)


def timed(argv: list[str], **kw) -> tuple[float, int, str]:
    """(wall seconds, peak RSS in KiB of that one process, stdout)."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, **kw)
    out = proc.stdout.read()
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0  # reaped by wait4
    return time.perf_counter() - started, usage.ru_maxrss, out


def run_meshbot(kubeconfig: Path, url: str) -> dict:
    meshbot = str(Path(sys.executable).with_name("meshbot"))
    before = stats(url)
    wall, rss_kb, out = timed([meshbot, "check", "all", "--kubeconfig", str(kubeconfig), "--json"], cwd=ROOT)
    after = stats(url)
    report = json.loads(out)
    coverage = next((line for r in report["results"] if r["check"] == "envoy.fd-exhaustion"
                     for line in r["evidence"] + [r["summary"]] if "sidecar logs" in line), "")
    return {"wall_s": wall, "run_s": report["duration_ms"] / 1000, "rss_mb": rss_kb / 1024,
            "requests": after["requests"] - before["requests"], "logs": after["logs"] - before["logs"],
            "statuses": {r["check"]: r["status"] for r in report["results"]}, "coverage": coverage}


def kubectl_sequence(kubeconfig: Path, url: str, cache: Path) -> dict:
    """The guide's commands, section by section, as an engineer types them (read-only equivalents)."""
    failed = []

    def k(*args: str) -> str:
        done = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache), *args],
                              capture_output=True, text=True)
        if done.returncode:  # every command must really have worked, or the comparison is void
            failed.append(f"kubectl {' '.join(args)}: {done.stderr.strip()[:200]}")
        return done.stdout.strip()

    before = stats(url)
    started = time.perf_counter()
    count = 0

    def run(*args: str) -> str:
        nonlocal count
        count += 1
        return k(*args)

    # Verifying connectivity to Istio Pilot: find the ingress pod, exec into it, curl the registration API
    run("get", "pods", "-n", NS)  # the simulator serves no short names (po, deploy, svc)
    run("get", "--raw", PROXY.format("istio-pilot:8080", "v1/registration"))
    # No traces in Zipkin (clock skew): a container's date against the host's; here the nodes' heartbeats
    run("get", "nodes", "-o", "yaml")
    subprocess.run(["date", "-u"], capture_output=True)
    # Envoy won't connect to my HTTP/1.0 service, and Envoy crashing under load: read a few sidecars' logs
    pods = run("-n", "default", "get", "pods", "-o", "name").split()
    for pod in pods[:3]:
        run("-n", "default", "logs", pod.split("/")[-1], "-c", "istio-proxy", "--tail", "300")
    # Where are the metrics: is every workload injected, then Mixer's self-monitoring port
    run("get", "namespace", "-L", "istio-injection")
    mixer = run("-n", NS, "get", "pod", "-l", "istio=mixer", "-o", "jsonpath={.items[0].metadata.name}")
    run("get", "--raw", PROXY.format("istio-mixer:9093", "metrics"))  # grpc_server_handled_total
    run("get", "rules", "--all-namespaces")
    run("get", "prometheuses.config.istio.io", "--all-namespaces")
    run("get", "metrics.config.istio.io", "--all-namespaces")
    run("get", "--raw", PROXY.format("istio-mixer:9093", "metrics"))  # mixer_config_resolve_count
    run("-n", NS, "logs", mixer, "mixer")
    run("get", "--raw", PROXY.format("istio-mixer:9093", "metrics"))  # mixer_adapter_dispatch_count
    run("-n", NS, "logs", mixer, "mixer")                             # Report 0 returned with
    # Verify Prometheus configuration: its /config page (the ConfigMap it loads) and /targets
    run("-n", NS, "get", "pod", "-l", "app=prometheus", "-o", "jsonpath={.items[0].metadata.name}")
    run("-n", NS, "get", "configmap", "prometheus", "-o", "yaml")
    run("get", "--raw", PROXY.format("prometheus:9090", "api/v1/targets"))
    # Headless TCP services: the mesh config's mTLS (instead of edit), the CA deployment, headless services
    run("-n", NS, "get", "configmap", "istio", "-o", "yaml")
    run("-n", NS, "get", "deployments", "istio-ca")
    run("get", "services", "--all-namespaces", "-o", "wide")
    # Envoy high CPU: the refresh delays (instead of edit), then every pod's injected arguments
    run("-n", NS, "get", "configmap", "istio", "-o", "yaml")
    run("get", "pods", "-A", "-o", "yaml")
    # Webhook setup files missing from 0.5: the injector's certificate secret and CA bundle
    run("-n", NS, "get", "secret", "sidecar-injector-certs")
    run("get", "mutatingwebhookconfiguration", "istio-sidecar-injector", "-o", "yaml")
    # Injection fails with kube-apiserver proxy settings: its manifest and its log
    apiserver = run("-n", "kube-system", "get", "pod", "-l", "component=kube-apiserver", "-o",
                    "jsonpath={.items[0].metadata.name}")
    run("-n", "kube-system", "get", "pod", apiserver, "-o", "yaml")
    run("-n", "kube-system", "logs", apiserver)
    wall = time.perf_counter() - started
    return {"wall_s": wall, "commands": count, "requests": stats(url)["requests"] - before["requests"],
            "failed": failed}


def kubectl_modern_sequence(kubeconfig: Path, url: str, cache: Path) -> dict:
    """The common-problems pages' procedure on an istiod mesh, as an engineer types it with kubectl only (istioctl's
    proxy-status and check-inject port-forward or exec; their read-only inputs are read instead)."""
    failed, count = [], 0
    before = stats(url)
    started = time.perf_counter()

    def run(*args: str) -> str:
        nonlocal count
        count += 1
        done = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache), *args],
                              capture_output=True, text=True)
        if done.returncode:
            failed.append(f"kubectl {' '.join(args)}: {done.stderr.strip()[:200]}")
        return done.stdout.strip()

    pods = "/api/v1/namespaces/istio-system/pods/{}/proxy/{}"
    # Control plane: istiod running and ready, its endpoints, its metrics (pilot_xds, rejects)
    istiod = run("-n", NS, "get", "pod", "-l", "app=istiod", "-o", "jsonpath={.items[0].metadata.name}")
    run("-n", NS, "get", "pods", "-o", "wide")
    run("get", "--raw", pods.format(f"{istiod}:8080", "ready"))
    run("-n", NS, "get", "service", "istiod", "-o", "wide")  # kubesim serves no Endpoints
    run("get", "--raw", pods.format(f"{istiod}:15014", "metrics"))
    run("-n", NS, "logs", istiod, "--tail", "300")
    # Injection: the webhooks' selectors and CA bundles, namespace labels, every pod (sidecar or not), events
    run("get", "mutatingwebhookconfigurations", "-o", "yaml")
    run("get", "validatingwebhookconfigurations", "-o", "yaml")
    run("get", "namespaces", "--show-labels")
    run("get", "pods", "-A", "-o", "yaml")
    run("get", "events", "-A", "--field-selector", "reason=FailedCreate")
    run("-n", NS, "get", "configmap", "istio-ca-root-cert", "-o", "yaml")
    # Traffic and security: DestinationRules against PeerAuthentication, EnvoyFilters
    run("get", "destinationrules,peerauthentications,envoyfilters", "-A", "-o", "yaml")
    # Crashes and 426s: three sidecars' logs (nobody reads 2,000 by hand)
    names = run("-n", "default", "get", "pods", "-o", "name").split()
    for pod in names[:3]:
        run("-n", "default", "logs", pod.split("/")[-1], "-c", "istio-proxy", "--tail", "300")
    # Metrics: Prometheus' targets, the Telemetry resources
    run("get", "--raw", PROXY.format("prometheus:9090", "api/v1/targets"))
    run("get", "telemetries", "-A")
    return {"wall_s": time.perf_counter() - started, "commands": count,
            "requests": stats(url)["requests"] - before["requests"], "failed": failed}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mesh", choices=sorted(BASES), default="mixer")
    parser.add_argument("--pods", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--skip-kubectl", action="store_true")
    args = parser.parse_args()
    use_kubectl = not args.skip_kubectl and shutil.which("kubectl")
    print(f"load before: {uptime()}")
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, kubeconfig = start_simulator(Path(tmp), args.pods, args.latency_ms, args.mesh)
        sequence = kubectl_modern_sequence if args.mesh == "istiod" else kubectl_sequence
        try:
            meshbot, kubectl = [], []
            if use_kubectl:
                warm = sequence(kubeconfig, url, Path(tmp) / "cache")  # warms kubectl's discovery cache
                for line in warm["failed"]:
                    print(f"  FAILED {line}")
            for _ in range(args.runs):
                meshbot.append(run_meshbot(kubeconfig, url))
                m = meshbot[-1]
                print(f"meshbot check all: wall {m['wall_s']:.2f} s (process start to exit), run {m['run_s']:.2f} s,"
                      f" peak RSS {m['rss_mb']:.0f} MB, {m['requests']} API requests ({m['logs']} logs)", flush=True)
                if use_kubectl:
                    kubectl.append(sequence(kubeconfig, url, Path(tmp) / "cache"))
                    s = kubectl[-1]
                    print(f"kubectl sequence:  wall {s['wall_s']:.2f} s, {s['commands']} commands, "
                          f"{s['requests']} API requests", flush=True)
                    for line in s["failed"]:
                        print(f"  FAILED {line}")
            last = meshbot[-1]
            bad = {k: v for k, v in last["statuses"].items() if v not in ("pass", "skip")}
            print(f"verdicts not pass/skip: {bad or 'none'}\nsidecar log coverage: {last['coverage']}")
            walls = [m["wall_s"] for m in meshbot]
            print(f"meshbot median wall {statistics.median(walls):.2f} s (min {min(walls):.2f}, max {max(walls):.2f}),"
                  f" max peak RSS {max(m['rss_mb'] for m in meshbot):.0f} MB, "
                  f"requests {sorted({m['requests'] for m in meshbot})}")
            if kubectl:
                kwalls = [s["wall_s"] for s in kubectl]
                print(f"kubectl median wall {statistics.median(kwalls):.2f} s "
                      f"(min {min(kwalls):.2f}, max {max(kwalls):.2f})")
                ratios = [s["wall_s"] / m["wall_s"] for m, s in zip(meshbot, kubectl, strict=True)]
                print(f"speed-up per pair: {', '.join(f'{r:.1f}x' for r in ratios)} "
                      f"(median {statistics.median(ratios):.1f}x)")
        finally:
            proc.terminate()
            proc.wait()
    print(f"load after: {uptime()}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
