"""The configuration analyzers (`meshbot check config`) on a large snapshot: ~2,000 pods, 500 Services and 1,000
Istio objects, on the simulated Istio 1.28.0.

    python bench/config_bench.py [--namespaces 50] [--runs 3]

Each namespace (injected) runs 10 workloads of 4 pods behind 10 Services (`--namespaces 50`: 2,000 pods, 500
Services), and carries per Service a DestinationRule with two subsets and, for 8 Services of 10, a VirtualService
splitting between them; per namespace an AuthorizationPolicy; every second namespace a Sidecar and a Gateway of
its own host on the ingress gateway: 1,000 Istio objects. One Service in fifty routes to a subset its
DestinationRule lacks and one DestinationRule in fifty has a subset without pods, so there are findings to report.

Two measures. In this process, the inputs are fetched once (the listings, and the two ConfigMaps read by name),
then the CPU time (``time.process_time``) of what comes after is taken: indexing the listings and running every
analyzer, that is the analysis beyond the fetch. Then `meshbot check config --json` runs as its own process, as a
user runs it: wall time and peak RSS (``wait4``). The simulator serves from a separate process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASE = ROOT / "kubesim/scenarios/_istio-1.28.0.yaml"
SERVICES, REPLICAS = 10, 4


def scenario(namespaces: int) -> dict:
    objects, spec_ns = [], {}
    for n in range(namespaces):
        ns = f"shop-{n:02d}"
        spec_ns[ns] = {"istio-injection": "enabled"}
        for s in range(SERVICES):
            app, index = f"svc-{s}", n * SERVICES + s
            objects.append({"apiVersion": "apps/v1", "kind": "Deployment",
                            "metadata": {"name": f"{app}-v1", "namespace": ns, "labels": {"app": app}},
                            "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": app, "version": "v1"}},
                                     "template": {"metadata": {"labels": {"app": app, "version": "v1"}},
                                                  "spec": {"containers": [{"name": app, "image": "example/app:1"}]}}}})
            objects.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": app, "namespace": ns},
                            "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 8080}]}})
            subsets = [{"name": "v1", "labels": {"version": "v1"}},
                       {"name": "v2", "labels": {"version": "v2" if index % 50 == 7 else "v1"}}]
            objects.append({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                            "metadata": {"name": app, "namespace": ns}, "spec": {"host": app, "subsets": subsets}})
            if s < 8:
                missing = "v3" if index % 50 == 3 else "v2"
                objects.append({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                                "metadata": {"name": app, "namespace": ns},
                                "spec": {"hosts": [app], "http": [{"route": [
                                    {"destination": {"host": app, "subset": "v1"}, "weight": 90},
                                    {"destination": {"host": app, "subset": missing}, "weight": 10}]}]}})
        objects.append({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                        "metadata": {"name": "allow-shop", "namespace": ns},
                        "spec": {"selector": {"matchLabels": {"app": "svc-0"}},
                                 "rules": [{"from": [{"source": {"namespaces": [ns, "istio-system"]}}],
                                            "to": [{"operation": {"methods": ["GET"]}}]}]}})
        if n % 2 == 0:
            objects.append({"apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
                            "metadata": {"name": "default", "namespace": ns},
                            "spec": {"egress": [{"hosts": ["./*", "istio-system/*"]}]}})
            objects.append({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
                            "metadata": {"name": f"{ns}-gateway", "namespace": ns},
                            "spec": {"selector": {"istio": "ingressgateway"}, "servers": [
                                {"port": {"number": 8080, "name": "http", "protocol": "HTTP"},
                                 "hosts": [f"{ns}.example.com"]}]}})
    return {"description": f"Istio 1.28.0 with {namespaces * SERVICES * REPLICAS} pods in {namespaces} namespaces",
            "extends": str(BASE), "nodes": 20, "namespaces": spec_ns, "objects": objects}


def start_simulator(workdir: Path, namespaces: int):
    path = workdir / "config-bench.yaml"
    path.write_text(yaml.safe_dump(scenario(namespaces)))
    kubeconfig = workdir / "kubeconfig"
    proc = subprocess.Popen([sys.executable, "-m", "kubesim", str(path), "--kubeconfig", str(kubeconfig)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    proc.stdout.readline()  # the URL, printed once the server listens
    return proc, kubeconfig


async def analyse_in_process(kubeconfig: Path) -> dict:
    from checks import istio as istio_mod
    from checks.analyzers.all import ANALYZERS
    from checks.analyzers.snapshot import Table
    from checks.cluster import Cluster
    from checks.gather import Gatherer
    from checks.model import Context, Settings

    cluster = Cluster.connect("bench", str(kubeconfig))
    g = Gatherer(cluster, deadline=time.monotonic() + 60)
    try:
        detection = istio_mod.deployments_input("istio-system")
        istio = istio_mod.detect("istio-system", (await g.gather([detection]))[detection])
        keys = {k for a in ANALYZERS for k in a.inputs(istio)}
        raw = [k.source for k in keys if isinstance(k, Table)] + [k for k in keys if not isinstance(k, Table)]
        started, cpu = time.perf_counter(), time.process_time()
        await g.gather(raw)  # the fetch: every listing and named object, once
        fetch_wall, fetch_cpu = time.perf_counter() - started, time.process_time() - cpu
        cpu = time.process_time()
        values = await g.gather(keys)  # indexing: no request left to make
        results = []
        for a in ANALYZERS:
            out = a.run(Context(istio, Settings(), values, frozenset(a.inputs(istio))))
            results += out if isinstance(out, list) else [out]
        analysis_cpu = time.process_time() - cpu
    finally:
        await cluster.aclose()
    sizes = {k.kind if str(k).startswith("Objects") else str(k): len(values[k]) for k in keys
             if isinstance(k, Table) and not isinstance(values[k], Exception)}
    return {"fetch_wall_s": fetch_wall, "fetch_cpu_s": fetch_cpu, "analysis_cpu_s": analysis_cpu,
            "requests": g.requests, "findings": sum(r.code != "" for r in results), "sizes": sizes}


def cli_run(kubeconfig: Path) -> dict:
    meshbot = str(Path(sys.executable).with_name("meshbot"))
    started = time.perf_counter()
    proc = subprocess.Popen([meshbot, "check", "config", "--kubeconfig", str(kubeconfig), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    out = proc.stdout.read()
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0
    report = json.loads(out)
    return {"wall_s": time.perf_counter() - started, "rss_mb": usage.ru_maxrss / 1024,
            "cpu_s": usage.ru_utime + usage.ru_stime, "run_s": report["duration_ms"] / 1000,
            "findings": sum("code" in r for r in report["results"])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespaces", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print("load before:", os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        proc, kubeconfig = start_simulator(Path(tmp), args.namespaces)
        try:
            inproc = [asyncio.run(analyse_in_process(kubeconfig)) for _ in range(args.runs)]
            cli = [cli_run(kubeconfig) for _ in range(args.runs)]
        finally:
            proc.terminate()
            proc.wait()
    print("load after:", os.getloadavg())
    print("snapshot:", ", ".join(f"{k} {v}" for k, v in sorted(inproc[0]["sizes"].items()) if v))
    print(f"requests: {inproc[0]['requests']}, findings: {inproc[0]['findings']} (CLI: {cli[0]['findings']})")
    for key in ("fetch_wall_s", "fetch_cpu_s", "analysis_cpu_s"):
        values = [r[key] for r in inproc]
        print(f"{key}: median {statistics.median(values):.3f}  ({', '.join(f'{v:.3f}' for v in values)})")
    for key in ("wall_s", "run_s", "cpu_s", "rss_mb"):
        values = [r[key] for r in cli]
        print(f"cli {key}: median {statistics.median(values):.2f}  ({', '.join(f'{v:.2f}' for v in values)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
