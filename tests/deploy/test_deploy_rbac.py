"""The RBAC in deploy/ is read-only and covers exactly what the checks read.

What the checks read is not written down here: `meshbot check all` runs against every simulated
scenario and every request the simulated API server records is checked against the rendered
ClusterRole, the way the API server's RBAC authorizer would decide it. In the other direction,
every grant must be used by a recorded request or declared as an input kind in checks.inputs.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass
from urllib.parse import unquote

import pytest
from deploykit import VARIANTS, find, one

import checks.inputs
import kubesim
import kubesim.scenario
from bot.cli import main
from checks.cluster import describe

WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "escalate", "bind", "impersonate", "*"}
READ_VERBS = {"get", "list", "watch"}
# Paths every authenticated user may GET (the default ClusterRoles system:discovery and
# system:public-info-viewer); no grant of meshbot's is needed or given for them.
DISCOVERY = {"/version", "/api", "/apis"}


@dataclass(frozen=True)
class Access:
    """One request as the RBAC authorizer sees it."""

    verb: str
    group: str
    resource: str
    subresource: str
    name: str
    namespace: str | None
    path: str


def access(path: str) -> Access | None:
    """The request attributes of a GET path, via checks.cluster.describe; None for non-resource URLs."""
    verb, what, namespace = describe(path)
    if what.startswith("/"):
        return None
    resource, _, subresource = what.partition("/")
    resource, _, group = resource.partition(".")
    parts = [p for p in path.split("?")[0].split("/") if p]
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    if rest[:1] == ["namespaces"] and len(rest) > 2:
        rest = rest[2:]
    name = unquote(rest[1]) if len(rest) > 1 else ""
    return Access(verb, group, resource, subresource, name, namespace, path)


def is_discovery(path: str) -> bool:
    parts = [p for p in path.split("?")[0].split("/") if p]
    return (path in DISCOVERY or (parts[:1] == ["api"] and len(parts) == 2)
            or (parts[:1] == ["apis"] and len(parts) <= 3))


def allows(rule: dict, a: Access) -> bool:
    """One PolicyRule against one request, as rbac/v1 evaluates it."""
    resource = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    return (
        (a.group in rule.get("apiGroups", []) or "*" in rule.get("apiGroups", []))
        and (resource in rule.get("resources", []) or "*" in rule.get("resources", []))
        and (a.verb in rule.get("verbs", []) or "*" in rule.get("verbs", []))
        and (not rule.get("resourceNames") or a.name in rule["resourceNames"])
    )


@pytest.fixture(scope="session")
def recorded(tmp_path_factory) -> dict[str, list]:
    """scenario → every request `meshbot check all` made to the simulated API server."""
    folder = tmp_path_factory.mktemp("check-all")
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MESHBOT_CONFIG", raising=False)
        for name in kubesim.scenario.names():
            with kubesim.Simulator(kubesim.load(name)) as sim:
                kubeconfig = sim.write_kubeconfig(folder / name)
                stdout = io.StringIO()
                with contextlib.redirect_stdout(stdout):
                    code = main(["check", "all", "--kubeconfig", str(kubeconfig), "--json"])
            assert code in (0, 1), f"{name}: meshbot check all exited {code}"
            report = json.loads(stdout.getvalue())
            assert report["results"], f"{name}: no check ran"
            out[name] = list(sim.requests)
    return out


def roles(objects: list[dict]) -> list[dict]:
    return find(objects, "ClusterRole") + find(objects, "Role")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_no_role_grants_a_write_verb_or_a_wildcard(rendered, variant):
    problems = []
    for role in roles(rendered[variant]):
        where = f"{role['kind']}/{role['metadata']['name']}"
        assert "aggregationRule" not in role, f"{where}: aggregated roles grant what others add"
        for rule in role.get("rules", []):
            written = set(rule.get("verbs", [])) & WRITE_VERBS
            if written:
                problems.append(f"{where}: grants {sorted(written)} on {rule.get('resources')}")
            if not set(rule.get("verbs", [])) <= READ_VERBS:
                problems.append(f"{where}: verbs beyond get/list/watch: {rule['verbs']}")
            for field in ("apiGroups", "resources", "resourceNames", "nonResourceURLs"):
                if any("*" in value for value in rule.get(field, [])):
                    problems.append(f"{where}: wildcard in {field}")
            if "nonResourceURLs" in rule:
                problems.append(f"{where}: grants non-resource URLs")
            subresources = [r for r in rule.get("resources", []) if "/" in r]
            if subresources and rule["verbs"] != ["get"]:
                problems.append(f"{where}: subresources {subresources} need only get")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_only_the_reader_role_is_bound(rendered, variant):
    objects = rendered[variant]
    bindings = find(objects, "ClusterRoleBinding") + find(objects, "RoleBinding")
    assert [b["roleRef"]["name"] for b in bindings] == ["meshbot-reader"]
    assert [r["metadata"]["name"] for r in roles(objects)] == ["meshbot-reader"]


def test_the_checks_only_send_get_requests(recorded):
    other = {(name, r.method, r.path) for name, requests in recorded.items() for r in requests if r.method != "GET"}
    assert not other


def test_every_request_the_checks_make_is_granted(rendered, recorded):
    rules = one(rendered["socket"], "ClusterRole", "meshbot-reader")["rules"]
    denied: dict[str, str] = {}
    for scenario, requests in recorded.items():
        for request in requests:
            a = access(request.path)
            if a is None:
                assert is_discovery(request.path), f"{scenario}: non-resource URL {request.path}"
            elif not any(allows(rule, a) for rule in rules):
                what = " ".join(filter(None, [a.verb, "/".join(filter(None, [a.resource, a.subresource]))
                                              + f".{a.group or 'core'}", a.name if a.verb == "get" else ""]))
                denied.setdefault(what, f"{scenario}: {request.path}")
    assert not denied, "the ClusterRole denies:\n" + "\n".join(f"{k}  (e.g. {v})" for k, v in sorted(denied.items()))


def test_the_role_grants_nothing_the_checks_do_not_read(rendered, recorded):
    rules = one(rendered["socket"], "ClusterRole", "meshbot-reader")["rules"]
    used = {access(r.path) for requests in recorded.values() for r in requests} - {None}
    declared = {(k.api.rpartition("/")[0], k.plural) for k in vars(checks.inputs).values()
                if isinstance(k, checks.inputs.Kind)}
    unused = []
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                base, _, sub = resource.partition("/")
                hit = any(a.group == group and a.resource == base and a.subresource == sub for a in used)
                if not hit and not (not sub and (group, base) in declared):
                    unused.append(f"{resource}.{group or 'core'}")
    assert not unused, f"granted but neither read by any scenario nor declared in checks.inputs: {unused}"


def test_secrets_are_granted_by_name_and_only_the_names_the_checks_read(rendered, recorded):
    rules = one(rendered["socket"], "ClusterRole", "meshbot-reader")["rules"]
    secret_rules = [r for r in rules if "secrets" in r["resources"]]
    assert secret_rules, "the injector certificate check reads one Secret"
    read = {a.name for requests in recorded.values() for r in requests
            if (a := access(r.path)) and a.resource == "secrets"}
    assert read == {"sidecar-injector-certs"}
    for rule in secret_rules:
        assert rule["resources"] == ["secrets"] and rule["apiGroups"] == [""]
        assert rule["verbs"] == ["get"], "no list or watch: those would return every Secret"
        assert set(rule.get("resourceNames", [])) == read, "every Secret of the cluster would be readable"


def test_secrets_are_read_as_metadata_only(recorded):
    """RBAC cannot say "metadata only"; the checks must ask for it (PartialObjectMetadata)."""
    for scenario, requests in recorded.items():
        for r in requests:
            a = access(r.path)
            if a and a.resource == "secrets":
                assert "as=PartialObjectMetadata" in r.accept, f"{scenario}: {r.path} may return Secret data"


def test_the_authorizer_model_denies_what_it_should():
    """The rule matcher used above is not vacuous."""
    pods = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}
    named = {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["a"], "verbs": ["get"]}
    assert allows(pods, access("/api/v1/pods"))
    assert not allows(pods, access("/api/v1/namespaces/x/pods/p/log"))
    assert not allows(pods, access("/apis/apps/v1/deployments"))
    assert allows(named, access("/api/v1/namespaces/x/secrets/a"))
    assert not allows(named, access("/api/v1/namespaces/x/secrets/b"))
    assert not allows(named, access("/api/v1/namespaces/x/secrets"))
    assert access("/version") is None and is_discovery("/version")
    assert os.path.basename(access("/api/v1/namespaces/x/services/s:9093/proxy/metrics").subresource) == "proxy"
