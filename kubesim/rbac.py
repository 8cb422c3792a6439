"""A ClusterRole enforced as the API server's RBAC authorizer would for a read-only client: every GET that no
rule grants answers 403 with the API server's own message, discovery stays open (system:discovery)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

USER = "system:serviceaccount:meshbot:meshbot"


@dataclass(frozen=True)
class Attributes:
    """What the authorizer decides on (k8s.io/apiserver request info): verb, group, resource, subresource, name,
    namespace."""

    verb: str
    group: str
    resource: str
    subresource: str = ""
    name: str = ""
    namespace: str = ""


def request_attributes(path: str, query: dict) -> Attributes | None:
    """The attributes of a GET on ``path``; None for a non-resource path (discovery, /version)."""
    parts = path.strip("/").split("/")
    if parts[0] == "api" and len(parts) >= 3:
        group, rest = "", parts[2:]
    elif parts[0] == "apis" and len(parts) >= 4:
        group, rest = parts[1], parts[3:]
    else:
        return None
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource, name, sub = rest[0], rest[1].split(":")[0] if len(rest) > 1 else "", rest[2] if len(rest) > 2 else ""
    if resource == "namespaces" and name:
        namespace = name
    verb = "get" if name else ("watch" if query.get("watch") in ("1", "true") else "list")
    return Attributes(verb, group, resource, sub, name, namespace)


class ClusterRole:
    def __init__(self, rules: list[dict]):
        self.rules = rules

    @classmethod
    def load(cls, path: Path) -> ClusterRole:
        return cls(yaml.safe_load(path.read_text()).get("rules") or [])

    def allows(self, a: Attributes) -> bool:
        wanted = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
        for rule in self.rules:
            if a.group not in rule.get("apiGroups", ()) and "*" not in rule.get("apiGroups", ()):
                continue
            if wanted not in rule.get("resources", ()) and "*" not in rule.get("resources", ()):
                continue
            if a.verb not in rule.get("verbs", ()) and "*" not in rule.get("verbs", ()):
                continue
            names = rule.get("resourceNames")
            if names and a.name not in names:  # a named grant never allows a list
                continue
            return True
        return False

    def forbidden(self, a: Attributes) -> str:
        """The API server's message for a denied request."""
        what = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
        named = f'"{a.name}" ' if a.name else ""
        kind = f"{a.resource}.{a.group}" if a.group else a.resource
        scope = f'in the namespace "{a.namespace}"' if a.namespace and a.resource != "namespaces" else \
            "at the cluster scope"
        return (f'{kind} {named}is forbidden: User "{USER}" cannot {a.verb} resource "{what.split("/")[0]}"'
                + (f' with subresource "{a.subresource}"' if a.subresource else "")
                + f' in API group "{a.group}" {scope}')
