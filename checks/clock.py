"""Clock skew between the nodes, the API server and the bot (traces and dashboards shifted in time)."""

from __future__ import annotations

from datetime import UTC, datetime

from checks.errors import BadPayload
from checks.inputs import LEASES, NODES, ApiServerClock, Objects
from checks.model import ALL_GENERATIONS, Context, InputUnavailable, Response, check, failed, passed

NODE_LEASES = Objects(LEASES, "kube-node-lease")
# A kubelet renews its heartbeat about every 10 s, so a healthy one is at most that old.
HEARTBEAT_PERIOD = 10.0
SERVER_DATE_RESOLUTION = 1.0  # the Date header has whole seconds
SYNC_FIX = ("# on each node (and the machine that reads the dashboards), check the time service:\n"
            "timedatectl status\nchronyc tracking   # or: ntpq -p\n"
            "# Docker Desktop on a Mac: restart Docker, then reinstall Istio")


def _parse(stamp: str | None) -> float | None:
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _server_now(response: Response) -> float:
    now = response.server_time()
    if now is None:
        raise InputUnavailable(BadPayload("the API server sent no Date header"))
    return now


def _heartbeats(ctx: Context) -> dict[str, tuple[float, bool]]:
    """node → (last heartbeat by the node's own clock, node reported Ready)."""
    leases = {lease["metadata"]["name"]: _parse((lease.get("spec") or {}).get("renewTime"))
              for lease in ctx.maybe(NODE_LEASES, [])}
    beats = {}
    for node in ctx.get(Objects(NODES)):
        name = node["metadata"]["name"]
        ready = next((c for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), {})
        beat = leases.get(name) or _parse(ready.get("lastHeartbeatTime"))
        if beat is not None:
            beats[name] = (beat, ready.get("status") == "True")
    return beats


@check(id="clock.node-skew", title="Node clocks agree with the API server",
       section="no-traces-appearing-in-zipkin-when-running-istio-locally-on-mac", generations=ALL_GENERATIONS,
       inputs=lambda istio: (Objects(NODES), NODE_LEASES, ApiServerClock()),
       signatures=("zipkin", "jaeger", "spans", "traces", ":9411", ":16686", "Docker for Mac", "date -u",
                   "lease renewTime", "clock skew"))
def node_skew(ctx: Context):
    """Compares each node's last heartbeat, stamped by the kubelet with the node's clock, with the API server's
    clock: a heartbeat from the future, or a stale one from a node that still reports Ready, means skew."""
    now = _server_now(ctx.get(ApiServerClock()))
    limit = ctx.settings.clock_skew_seconds
    skewed, seen = [], []
    for node, (beat, ready) in sorted(_heartbeats(ctx).items()):
        offset = beat - now
        seen.append(f"node {node}: heartbeat {offset:+.0f}s from the API server's clock")
        if offset > limit + SERVER_DATE_RESOLUTION:
            skewed.append(f"node {node} is about {offset:.0f}s ahead of the API server")
        elif ready and -offset > limit + HEARTBEAT_PERIOD + SERVER_DATE_RESOLUTION:
            skewed.append(f"node {node} is about {-offset - HEARTBEAT_PERIOD:.0f}s or more behind the API server")
    if skewed:
        return failed(f"{len(skewed)} node clock(s) differ from the API server by more than {limit:g}s: traces and"
                      " metrics from them land at the wrong time", skewed + seen[:5], SYNC_FIX)
    return passed(f"{len(seen)} node clocks within {limit:g}s of the API server", *seen[:5])


@check(id="clock.client-skew", title="The bot's clock agrees with the cluster",
       section="no-grafana-output-when-connecting-from-a-local-web-client-to-istio-remotely-hosted",
       generations=ALL_GENERATIONS, inputs=lambda istio: (ApiServerClock(),),
       signatures=("grafana", ":3000", "No data points", "browser clock", "ntpd", "chronyc tracking",
                   "timedatectl"))
def client_skew(ctx: Context):
    """Compares the API server's clock (its Date header) with the clock of the machine running the bot, a
    client like the browser that asks Grafana for the last minutes of data."""
    response = ctx.get(ApiServerClock())
    now = _server_now(response)
    midpoint = (response.sent_at + response.received_at) / 2
    offset = now - midpoint
    slack = SERVER_DATE_RESOLUTION + (response.received_at - response.sent_at) / 2
    limit = ctx.settings.clock_skew_seconds
    line = f"API server Date {datetime.fromtimestamp(now, UTC):%Y-%m-%d %H:%M:%S}Z, bot clock {offset:+.0f}s apart"
    if abs(offset) > limit + slack:
        side = "ahead of" if offset > 0 else "behind"
        return failed(f"the cluster's clock is {abs(offset):.0f}s {side} this client's: dashboards asking for recent"
                      " data come back empty", [line], SYNC_FIX)
    return passed(f"the cluster's clock is within {limit:g}s of the bot's", line)
