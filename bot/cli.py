"""The ``meshbot`` command line."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import json
import os
import sys
from collections.abc import Sequence

from bot.config import ConfigurationError, load_config
from checks.errors import ConfigError

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one clear line, exit 2
        self.exit(EXIT_USAGE, f"meshbot: {message} (see meshbot --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="meshbot", description="Diagnose Istio service meshes, from a terminal or Slack.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    check = sub.add_parser("check", help="run checks on one cluster")
    check.add_argument("targets", nargs="+", metavar="TARGET", help="a group (mixer, pilot, …, all) or a check id")
    check.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then ~/.kube/config)")
    check.add_argument("--context", help="kubeconfig context")
    check.add_argument("--cluster", help="a cluster named in MESHBOT_CONFIG")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.add_argument("--all-pods", action="store_true",
                       help="read every sidecar's log, not only those pod status points at plus one per workload")
    check.add_argument("--namespace", "-n", metavar="NS",
                       help="configuration findings (`config`) about objects in this namespace only")

    listing = sub.add_parser("checks", help="list every check")
    listing.add_argument("--json", action="store_true")

    ask = sub.add_parser("ask", help="answer a question from the troubleshooting guides")
    ask.add_argument("question", nargs="+", help="the question, or - to read one question a line from stdin")
    ask.add_argument("--guide", action="append", default=[], metavar="PATH_OR_URL")
    ask.add_argument("--json", action="store_true")

    serve = sub.add_parser("serve", help="run the Slack app")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=3000)
    serve.add_argument("--socket", action="store_true", help="use Socket Mode instead of HTTP")

    worker = sub.add_parser("worker", help="run queued jobs")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    worker.add_argument("--health-port", type=int, default=None, help="serve /healthz and /metrics on this port")
    worker.add_argument("--health-host", default="127.0.0.1", help="address for the health port (0.0.0.0 in a pod)")
    sub.add_parser("scheduler", help="fire scheduled digests")

    demo = sub.add_parser("demo", help="the whole bot on one machine, nothing configured")
    demo.add_argument("--run", action="append", default=[], metavar="LINE", help="run LINE and exit (repeatable)")
    demo.add_argument("--mixer", action="store_true", help="a broken Istio 0.5.1 (Mixer-era) mesh instead of istiod")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ConfigurationError, ConfigError) as exc:
        print(f"meshbot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def cmd_check(args) -> int:
    from bot.text import report_text
    from checks.runner import UnknownTarget, select
    from checks.service import run_on_cluster

    try:
        chosen = select(args.targets)
    except UnknownTarget as exc:
        print(f"meshbot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    config = load_config()
    if args.kubeconfig or args.context or not config.clusters:
        from bot.config import ClusterConfig

        name, cluster = args.context or "default", ClusterConfig(kubeconfig=args.kubeconfig, context=args.context)
        suppressed = []
    else:
        name, cluster = config.cluster(args.cluster)
        suppressed = _suppressions(name, cluster)
    with _no_cycle_collector():
        report = run_on_cluster(name, cluster, chosen, config.checks, all_pods=args.all_pods,
                                focus_namespace=args.namespace, suppressions=suppressed)
    print(json.dumps(report.to_json(), indent=2) if args.json else report_text(report))
    return EXIT_OK if report.ok else EXIT_FINDINGS


def _suppressions(name: str, cluster) -> list:
    """A configured cluster's suppressions: its config's, and those made from Slack when REDIS_URL names the bot's
    Redis. A Redis that does not answer leaves the config's, with a warning: the run goes on."""
    from bot import suppressions

    url = os.environ.get("REDIS_URL")
    if not url:
        return suppressions.for_cluster(cluster, name)
    import redis

    try:
        return suppressions.for_cluster(cluster, name, redis.Redis.from_url(url, socket_timeout=1,
                                                                           socket_connect_timeout=1))
    except redis.RedisError as exc:
        print(f"meshbot: warning: suppressions made in Slack not applied (Redis: {exc})", file=sys.stderr)
        return suppressions.for_cluster(cluster, name)


@contextlib.contextmanager
def _no_cycle_collector():
    """A run parses every pod of the cluster: a million small objects with no cycles among them, which the
    cyclic collector would walk again and again for nothing (a quarter of a run's time at 10,000 pods)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def cmd_checks(args) -> int:
    from checks.catalog import ALL_CHECKS

    rows = [{"id": c.id, "title": c.title, "section": c.section, "group": c.group,
             "generations": sorted(g.value for g in c.generations), "description": c.description}
            for c in ALL_CHECKS]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        width = max(len(r["id"]) for r in rows)
        for r in rows:
            print(f"{r['id']:<{width}}  {r['title']}  (#{r['section']})")
    return EXIT_OK


def cmd_ask(args) -> int:
    import knowledge

    config = load_config()
    try:
        index = knowledge.load_index(args.guide or config.guides)
    except knowledge.GuideError as exc:
        print(f"meshbot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for warning in index.warnings:  # a part of a guide that could not be read: say where, answer from the rest
        print(f"meshbot: warning: {warning}", file=sys.stderr)
    if args.question == ["-"]:
        for line in sys.stdin:  # one answer a line, blank lines included, so outputs pair with inputs
            answer = index.answer(line) if line.strip() else None
            print(json.dumps(answer.to_json() if answer else {"matches": [], "suggestions": []}), flush=True)
        return EXIT_OK
    answer = index.answer(" ".join(args.question))
    if args.json:
        print(json.dumps(answer.to_json(), indent=2))
    elif answer.matches:
        for m in answer.matches:
            print(f"{m.title}  (#{m.section}, {m.guide}, score {m.score:.2f})\n{m.plain_excerpt}\n")
    elif answer.suggestions:
        print("Not sure; closest sections:")
        for m in answer.suggestions:
            print(f"  {m.title}  (#{m.section}, {m.guide}, score {m.score:.2f})  {m.url}")
    else:
        print("No section of the guides answers that. Try `meshbot checks` for what can be checked.")
    return EXIT_OK


def _process(module: str):
    def run(args) -> int:
        import importlib

        return importlib.import_module(module).main(args)

    return run


COMMANDS = {
    "check": cmd_check,
    "checks": cmd_checks,
    "ask": cmd_ask,
    "serve": _process("bot.serve"),
    "worker": _process("bot.worker"),
    "scheduler": _process("bot.scheduler"),
    "demo": _process("bot.demo"),
}


def console() -> None:
    """The console script. After `check`, exit without tearing the interpreter down: freeing a big run's
    objects one by one takes longer than its checks. Exit handlers (temporary kubeconfig certificates,
    logging) still run; other commands may have threads to join, so they exit the usual way."""
    code = main()
    if sys.argv[1:2] != ["check"]:
        sys.exit(code)
    with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing left to say
        sys.stdout.flush()
        sys.stderr.flush()
    atexit._run_exitfuncs()
    os._exit(code)


if __name__ == "__main__":
    console()
