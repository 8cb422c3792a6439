"""Every way reading a cluster can fail, as one tree.

    ClusterError                 could not read what a check needs
    ├── AccessError              the cluster cannot be reached at all
    │   ├── ConfigError          bad kubeconfig, unknown context, no credentials
    │   └── Unreachable          connection refused, DNS, TLS
    ├── RequestTimeout           a request or the whole run ran out of time
    ├── Forbidden                401/403: names the verb and resource to grant
    ├── NotInstalled             the resource kind is not served (CRD absent)
    ├── ServerError              5xx or another unexpected status
    └── BadPayload               the answer could not be parsed

Messages never carry credentials: ``without_credentials`` strips them from URLs.

A check never sees these as exceptions: the runner turns them into an
``error`` result that carries the message.
"""


import re

_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)?[^\s/@,'\"]+@")


def without_credentials(text: str) -> str:
    """``http://user:pw@proxy:3128`` and ``user:pw@proxy:3128`` become ``http://***@proxy:3128``, ``***@proxy:3128``."""
    return _USERINFO.sub(lambda m: f"{m.group(1) or ''}***@", text)


class ClusterError(Exception):
    """Base class: the message is shown to users as the cause."""


class AccessError(ClusterError):
    pass


class ConfigError(AccessError):
    pass


class Unreachable(AccessError):
    pass


class RequestTimeout(ClusterError):
    pass


class Forbidden(ClusterError):
    def __init__(self, verb: str, resource: str, namespace: str | None, detail: str = ""):
        where = f" in namespace {namespace}" if namespace else " cluster-wide"
        super().__init__(
            f"forbidden: the bot's account may not {verb} {resource}{where}"
            f" (grant {verb} on {resource}){': ' + detail if detail else ''}"
        )
        self.verb, self.resource, self.namespace = verb, resource, namespace


class NotInstalled(ClusterError):
    def __init__(self, resource: str):
        super().__init__(f"{resource} is not installed in this cluster (the API server does not serve it)")
        self.resource = resource


class ServerError(ClusterError):
    def __init__(self, status: int, what: str, detail: str = ""):
        super().__init__(f"{what} answered HTTP {status}{': ' + detail if detail else ''}")
        self.status = status
        self.detail = detail


class BadPayload(ClusterError):
    pass
