"""EnvoyFilters: patch operations that are ignored where they are applied, and relative patches that drift."""

from __future__ import annotations

from checks.analyzers import Finding, Snapshot, analyzer
from checks.analyzers.snapshot import ENVOY_FILTERS, name, namespace_of, spec

RELATIVE = {"INSERT_BEFORE", "INSERT_AFTER"}
ROUTES = {"ROUTE_CONFIGURATION", "HTTP_ROUTE"}
FILTERS = {"NETWORK_FILTER", "HTTP_FILTER"}


def _target(patch: dict) -> str:
    """What a patch is about, for telling patches apart: the filter it inserts, or the one it matches."""
    value = (patch.get("patch") or {}).get("value")
    if isinstance(value, dict) and value:
        if value.get("name") is not None:
            return str(value["name"])
        return str(((((patch.get("match") or {}).get("listener") or {}).get("filterChain") or {})
                    .get("filter") or {}).get("name") or "")
    return ""


@analyzer(id="config.envoy-filters", title="EnvoyFilter patches apply as written and keep their place",
          section="unchanged-envoy-filter-configuration-suddenly-stops-working",
          codes=("IST0151", "IST0152", "IST0153", "IST0154", "IST0155"), needs=lambda istio: (ENVOY_FILTERS,),
          signatures=("IST0151", "IST0155", "EnvoyFilter", "INSERT_BEFORE", "INSERT_AFTER", "priority",
                      "proxyVersion", "REPLACE", "REMOVE"))
def envoy_filters(snap: Snapshot):
    """ADD and REMOVE are ignored on ROUTE_CONFIGURATION and HTTP_ROUTE, REPLACE works only on filters; relative
    operations (INSERT_BEFORE/AFTER, REPLACE, REMOVE) without spec.priority depend on other filters' order, and
    when another patch targets the same filter by proxyVersion they break on the next upgrade."""
    versioned: list[str] = []  # targets of the patches seen so far that match a proxyVersion (istioctl's order)
    for ef in sorted(snap[ENVOY_FILTERS].items, key=lambda o: (namespace_of(o), name(o))):
        ns, priority = namespace_of(ef), spec(ef).get("priority") or 0
        for i, patch in enumerate(spec(ef).get("configPatches") or []):
            if not patch.get("patch"):
                break
            op, apply_to = str(patch["patch"].get("operation", "")).upper(), str(patch.get("applyTo", "")).upper()
            target, field = _target(patch), f"spec.configPatches[{i}]"
            values = {"field": field, "operation": op, "apply_to": apply_to, "filter": target or "its target"}
            edit = f"kubectl -n {ns} edit envoyfilter {name(ef)}"
            relative = False
            if op == "ADD" and apply_to in ROUTES:
                yield Finding("EnvoyFilter", ns, name(ef), "IST0153", values,
                              f"{edit}   # {field}: use MERGE on {apply_to}, or ADD on a listener or cluster")
            elif op == "REMOVE" and apply_to in ROUTES:
                yield Finding("EnvoyFilter", ns, name(ef), "IST0154", values,
                              f"{edit}   # {field}: REMOVE applies to filters, listeners and clusters, not {apply_to}")
            elif op == "REPLACE" and apply_to not in FILTERS:
                yield Finding("EnvoyFilter", ns, name(ef), "IST0152", values,
                              f"{edit}   # {field}: use MERGE on {apply_to}; REPLACE only on filters")
            else:
                relative = op in RELATIVE or op in ("REPLACE", "REMOVE")
            if relative and not priority:
                code = "IST0155" if target in versioned else "IST0151"
                yield Finding("EnvoyFilter", ns, name(ef), code, values,
                              f"kubectl -n {ns} patch envoyfilter {name(ef)} --type merge -p '{{\"spec\": "
                              "{\"priority\": 10}}'   # an explicit order; or use INSERT_FIRST"
                              + ("\n# and match proxyVersion to the versions you run" if code == "IST0155" else ""))
            if ((patch.get("match") or {}).get("proxy") or {}).get("proxyVersion"):
                versioned.append(target)
