"""Serve a scenario until interrupted: python -m kubesim SCENARIO [--port P] [--kubeconfig PATH]."""

import argparse
import signal
import sys
import threading

from kubesim import Simulator, load


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m kubesim", description=__doc__)
    parser.add_argument("scenario", help="a scenario file, or a name under kubesim/scenarios/")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=None, help="added to every request")
    parser.add_argument("--kubeconfig", help="write a kubeconfig for the server here")
    args = parser.parse_args()
    scenario = load(args.scenario)
    if args.latency_ms is not None:
        scenario.latency_ms = args.latency_ms
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Simulator(scenario, args.host, args.port) as sim:
        if args.kubeconfig:
            sim.write_kubeconfig(args.kubeconfig)
        print(sim.url, flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        print(f"served {len(sim.requests)} requests", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
