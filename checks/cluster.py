"""Read-only access to one cluster: the only module that talks to the network.

Requests go through the official ``kubernetes`` client (kubeconfig, context or
in-cluster service account, with its TLS and token handling). In-mesh HTTP
endpoints are reached through the API server's proxy subresource unless a
direct URL is configured for them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import quote

import httpx
import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

from checks.errors import (
    BadPayload,
    ClusterError,
    ConfigError,
    Forbidden,
    NotInstalled,
    RequestTimeout,
    ServerError,
    Unreachable,
)

PAGE_SIZE = 500


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: Mapping[str, str]
    sent_at: float  # the bot's clock, before and after: bounds the server's Date
    received_at: float

    def json(self, what: str):
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise BadPayload(f"{what} did not answer JSON: {exc}") from None

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def server_time(self) -> float | None:
        date = self.headers.get("Date") or self.headers.get("date")
        try:
            return parsedate_to_datetime(date).timestamp() if date else None
        except (TypeError, ValueError):
            return None


def describe(path: str) -> tuple[str, str, str | None]:
    """(verb, resource, namespace) of a GET path, for permission messages."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    if parts[:1] == ["api"]:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"]:
        group, rest = parts[1], parts[3:]
    else:
        return "get", path, None
    namespace = None
    if rest[:1] == ["namespaces"] and len(rest) > 2:
        namespace, rest = rest[1], rest[2:]
    resource = rest[0] if rest else path
    if group:
        resource = f"{resource}.{group}"
    if len(rest) >= 3:
        return "get", f"{resource}/{rest[2]}", namespace
    return ("get" if len(rest) == 2 else "list"), resource, namespace


class Cluster:
    """GET-only client for one cluster. Thread-safe: the runner calls it from a pool."""

    def __init__(
        self,
        name: str,
        api: k8s.ApiClient,
        *,
        request_timeout: float = 5.0,
        endpoints: Mapping[str, str] | None = None,
    ):
        self.name = name
        self._api = api
        self.request_timeout = request_timeout
        self._endpoints = dict(endpoints or {})
        self._http = httpx.Client(timeout=request_timeout) if self._endpoints else None

    @classmethod
    def connect(
        cls,
        name: str,
        kubeconfig: str | None = None,
        context: str | None = None,
        *,
        request_timeout: float = 5.0,
        concurrency: int = 32,
        endpoints: Mapping[str, str] | None = None,
    ) -> Cluster:
        """Kubeconfig (and context) when given, else in-cluster, else ~/.kube/config."""
        configuration = k8s.Configuration()
        try:
            if kubeconfig or context or not os.environ.get("KUBERNETES_SERVICE_HOST"):
                if kubeconfig and not os.path.exists(kubeconfig):
                    raise ConfigError(f"kubeconfig {kubeconfig} does not exist")
                k8s_config.load_kube_config(
                    config_file=kubeconfig, context=context, client_configuration=configuration
                )
            else:
                k8s_config.load_incluster_config(client_configuration=configuration)
        except ConfigException as exc:
            raise ConfigError(f"cluster {name}: {_first_line(exc)}") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cluster {name}: cannot read kubeconfig: {_first_line(exc)}") from None
        configuration.connection_pool_maxsize = concurrency
        configuration.retries = 0
        return cls(name, k8s.ApiClient(configuration), request_timeout=request_timeout, endpoints=endpoints)

    def close(self) -> None:
        self._api.close()
        if self._http:
            self._http.close()

    # The network boundary: one method.
    def get(self, path: str, query: Mapping[str, object] | None = None, *, accept: str = "application/json",
            timeout: float | None = None) -> Response:
        timeout = min(timeout or self.request_timeout, self.request_timeout)
        params = [(k, str(v)) for k, v in (query or {}).items() if v is not None]
        method, url, headers, _, _ = self._api.param_serialize(
            "GET", path, query_params=params, header_params={"Accept": accept}, auth_settings=["BearerToken"]
        )
        sent = time.time()
        try:
            raw = self._api.call_api(method, url, headers, _request_timeout=timeout)
            body = raw.read()
        except (urllib3.exceptions.TimeoutError, TimeoutError):
            raise RequestTimeout(f"GET {path} timed out after {timeout:g} s") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unreachable(f"cannot reach the API server of {self.name}: {_first_line(exc)}") from None
        except k8s.ApiException as exc:  # TLS failures surface this way
            raise Unreachable(f"cannot reach the API server of {self.name}: {_first_line(exc.reason)}") from None
        return Response(raw.status, body or b"", dict(raw.headers or {}), sent, time.time())

    def get_ok(self, path: str, query: Mapping[str, object] | None = None, **kw) -> Response:
        response = self.get(path, query, **kw)
        if response.status >= 300:
            raise _status_error(path, response)
        return response

    def get_json(self, path: str, query: Mapping[str, object] | None = None, **kw):
        return self.get_ok(path, query, **kw).json(f"GET {path}")

    def get_object(self, path: str, *, metadata_only: bool = False) -> dict | None:
        """One object, or None when it does not exist."""
        accept = (
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
            if metadata_only else "application/json"
        )
        response = self.get(path, accept=accept)
        if response.status == 404 and _status_reason(response) == "NotFound" and not _kind_missing(response):
            return None
        if response.status >= 300:
            raise _status_error(path, response)
        obj = response.json(f"GET {path}")
        if metadata_only:  # an old API server ignores the Accept: drop what we must not hold
            obj.pop("data", None)
            obj.pop("stringData", None)
        return obj

    def list(self, path: str, query: Mapping[str, object] | None = None) -> list[dict]:
        return list(self.iter_list(path, query))

    def iter_list(self, path: str, query: Mapping[str, object] | None = None) -> Iterator[dict]:
        params = dict(query or {})
        params["limit"] = PAGE_SIZE
        while True:
            page = self.get_json(path, params)
            if not isinstance(page, dict) or not isinstance(page.get("items"), list):
                raise BadPayload(f"GET {path} did not answer a list")
            yield from page["items"]
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return
            params["continue"] = token

    def service_proxy(self, namespace: str, service: str, port: int | str, path: str) -> Response:
        """GET an in-mesh HTTP endpoint; any status is returned, transport errors raise."""
        direct = self._endpoints.get(f"{namespace}/{service}:{port}") or self._endpoints.get(f"{service}:{port}")
        if direct:
            return self._get_direct(direct.rstrip("/") + "/" + path.lstrip("/"))
        proxy_path = f"/api/v1/namespaces/{namespace}/services/{quote(f'{service}:{port}')}/proxy/{path.lstrip('/')}"
        response = self.get(proxy_path, accept="*/*")
        if response.status in (401, 403) and _is_api_status(response):  # the API server refused, not the endpoint
            raise _status_error(proxy_path, response)
        return response

    def _get_direct(self, url: str) -> Response:
        assert self._http is not None
        sent = time.time()
        try:
            r = self._http.get(url)
        except httpx.TimeoutException:
            raise RequestTimeout(f"GET {url} timed out after {self.request_timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise Unreachable(f"cannot reach {url}: {_first_line(exc)}") from None
        return Response(r.status_code, r.content, dict(r.headers), sent, time.time())


def _first_line(exc: object) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def _status_reason(response: Response) -> str:
    try:
        return json.loads(response.body).get("reason", "")
    except (ValueError, AttributeError):
        return ""


def _is_api_status(response: Response) -> bool:
    try:
        return json.loads(response.body).get("kind") == "Status"
    except (ValueError, AttributeError):
        return False


def _kind_missing(response: Response) -> bool:
    """A 404 from a path whose resource kind is not served at all."""
    try:
        details = json.loads(response.body).get("details") or {}
    except (ValueError, AttributeError):
        return True
    return not details.get("name")


def _status_error(path: str, response: Response) -> ClusterError:
    verb, resource, namespace = describe(path)
    message = ""
    try:
        message = json.loads(response.body).get("message", "")
    except (ValueError, AttributeError):
        message = response.text()[:200]
    if response.status in (401, 403):
        return Forbidden(verb, resource, namespace, "" if response.status == 403 else "credentials rejected")
    if response.status == 404 and (verb == "list" or _kind_missing(response)):
        return NotInstalled(resource)
    return ServerError(response.status, f"GET {path}", message.strip()[:300])
