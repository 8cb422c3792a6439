"""Read-only access to one cluster: the only module that talks to the network.

Requests go through the official ``kubernetes`` client (kubeconfig, context or
in-cluster service account, with its TLS and token handling). In-mesh HTTP
endpoints are reached through the API server's proxy subresource unless a
direct URL is configured for them.
"""

from __future__ import annotations

import json
import os
import ssl
import time
from collections.abc import Mapping
from urllib.parse import quote, urlencode

import aiohttp
import yarl
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
    without_credentials,
)
from checks.model import Response

PAGE_SIZE = 500
# Requests in flight per run: a run is bound by round trips (thousands of pod logs), not by CPU.
DEFAULT_CONCURRENCY = 64


def describe(path: str) -> tuple[str, str, str | None]:
    """(verb, resource, namespace) of a GET path, for permission messages."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    if parts[:1] == ["api"]:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) > 1:
        group, rest = parts[1], parts[3:]
    else:  # a non-resource URL, such as the /apis discovery list
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
    """GET-only client for one cluster, used from one asyncio event loop.

    The official client loads the configuration: kubeconfig and context or the in-cluster account,
    credentials (refreshed tokens included) and TLS material. Requests go over one aiohttp
    connection pool: a run makes thousands of them concurrently, and the generated client's
    per-request cost under threads was the run's bottleneck (see docs/decisions.md).
    """

    def __init__(self, name: str, configuration: k8s.Configuration, *, request_timeout: float = 5.0,
                 concurrency: int = DEFAULT_CONCURRENCY, endpoints: Mapping[str, str] | None = None):
        self.name = name
        self.request_timeout = request_timeout
        self._configuration = configuration
        self._host = configuration.host.rstrip("/")  # a property that re-reads the proxy environment
        self._concurrency = concurrency
        self._endpoints = dict(endpoints or {})
        self._session: aiohttp.ClientSession | None = None
        self._direct = None  # an httpx.AsyncClient, made when a direct URL is first used
        self._auth: dict[str, str] | None = None

    @classmethod
    def connect(cls, name: str, kubeconfig: str | None = None, context: str | None = None, *,
                request_timeout: float = 5.0, concurrency: int = DEFAULT_CONCURRENCY,
                endpoints: Mapping[str, str] | None = None) -> Cluster:
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
        return cls(name, configuration, request_timeout=request_timeout, concurrency=concurrency,
                   endpoints=endpoints)

    def _ssl(self) -> ssl.SSLContext | bool:
        if not self._host.startswith("https"):
            return False
        c = self._configuration
        context = ssl.create_default_context(cafile=c.ssl_ca_cert)
        if c.cert_file:
            context.load_cert_chain(c.cert_file, c.key_file)
        if not c.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _auth_headers(self) -> dict[str, str]:
        """Credentials, read once per Cluster: the refresh hook (exec plugins, expiring tokens) costs more
        than a request, and a Cluster lives for one run."""
        if self._auth is None:
            self._auth = {a["key"]: a["value"] for a in self._configuration.auth_settings().values()
                          if a.get("in") == "header" and a.get("value")}
        return self._auth

    async def aclose(self) -> None:
        if self._session:
            await self._session.close()
        if self._direct:
            await self._direct.aclose()

    # The network boundary: one method.
    async def get(self, path: str, query: Mapping[str, object] | None = None, *,
                  accept: str = "application/json") -> Response:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._concurrency, ssl=self._ssl()),
                auto_decompress=True, skip_auto_headers=("User-Agent",))
        params = [(k, str(v)) for k, v in (query or {}).items() if v is not None]
        url = self._host + path + (f"?{urlencode(params)}" if params else "")
        headers = {"Accept": accept, "User-Agent": "meshbot", **self._auth_headers()}
        sent = time.time()
        try:
            async with self._session.get(
                    yarl.URL(url, encoded=True), headers=headers, proxy=self._configuration.proxy,
                    timeout=aiohttp.ClientTimeout(total=self.request_timeout)) as answer:
                body = await answer.read()
                _whole(path, answer.headers, body)
                return Response(answer.status, body, answer.headers, sent, time.time())
        except TimeoutError:
            raise RequestTimeout(f"GET {path} timed out after {self.request_timeout:g} s") from None
        except aiohttp.ClientPayloadError as exc:  # the connection closed before the declared length arrived
            raise BadPayload(f"GET {path} was cut short: {_first_line(exc)}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise Unreachable(f"cannot reach the API server of {self.name}: {_first_line(exc)}") from None

    async def get_ok(self, path: str, query: Mapping[str, object] | None = None, **kw) -> Response:
        response = await self.get(path, query, **kw)
        if response.status >= 300:
            raise _status_error(path, response)
        return response

    async def get_json(self, path: str, query: Mapping[str, object] | None = None, **kw):
        return (await self.get_ok(path, query, **kw)).json(f"GET {path}")

    async def get_object(self, path: str, *, metadata_only: bool = False) -> dict | None:
        """One object, or None when it does not exist."""
        accept = (
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
            if metadata_only else "application/json"
        )
        response = await self.get(path, accept=accept)
        if response.status == 404 and _status_reason(response) == "NotFound" and not _kind_missing(response):
            return None
        if response.status >= 300:
            raise _status_error(path, response)
        obj = response.json(f"GET {path}")
        if metadata_only:  # an old API server ignores the Accept: drop what we must not hold
            obj.pop("data", None)
            obj.pop("stringData", None)
        return obj

    async def list(self, path: str, query: Mapping[str, object] | None = None) -> list[dict]:
        """Every item, page by page (the API server's limit/continue)."""
        params = dict(query or {})
        params["limit"] = PAGE_SIZE
        items: list[dict] = []
        while True:
            page = await self.get_json(path, params)
            if not isinstance(page, dict) or not isinstance(page.get("items"), list):
                raise BadPayload(f"GET {path} did not answer a list")
            for item in page["items"]:  # the API server's field ownership: a third of a pod, read by no check
                if isinstance(item, dict) and isinstance(item.get("metadata"), dict):
                    item["metadata"].pop("managedFields", None)
            items += page["items"]
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items
            params["continue"] = token

    async def service_proxy(self, namespace: str, service: str, port: int | str, path: str) -> Response:
        """GET an in-mesh HTTP endpoint; any status is returned, transport errors raise."""
        direct = self._endpoints.get(f"{namespace}/{service}:{port}") or self._endpoints.get(f"{service}:{port}")
        if direct:
            return await self._get_direct(direct.rstrip("/") + "/" + path.lstrip("/"))
        proxy_path = f"/api/v1/namespaces/{namespace}/services/{quote(f'{service}:{port}')}/proxy/{path.lstrip('/')}"
        response = await self.get(proxy_path, accept="*/*")
        if response.status in (401, 403) and _is_api_status(response):  # the API server refused, not the endpoint
            raise _status_error(proxy_path, response)
        return response

    async def pod_proxy(self, namespace: str, pod: str, port: int | str, path: str) -> Response:
        """GET a port of one pod through the API server (the pod's own endpoints, e.g. istiod's 8080)."""
        proxy_path = f"/api/v1/namespaces/{namespace}/pods/{quote(f'{pod}:{port}')}/proxy/{path.lstrip('/')}"
        response = await self.get(proxy_path, accept="*/*")
        if response.status in (401, 403) and _is_api_status(response):  # the API server refused, not the endpoint
            raise _status_error(proxy_path, response)
        return response

    async def _get_direct(self, url: str) -> Response:
        import httpx  # only clusters with direct endpoint URLs need it: keep it off the start-up path

        if self._direct is None:
            self._direct = httpx.AsyncClient(timeout=self.request_timeout)
        sent = time.time()
        try:
            r = await self._direct.get(url)
        except httpx.TimeoutException:
            raise RequestTimeout(f"GET {without_credentials(url)} timed out after {self.request_timeout:g} s") from None
        except httpx.RemoteProtocolError as exc:  # e.g. closed before the declared length arrived
            raise BadPayload(f"GET {without_credentials(url)} was cut short: {_first_line(exc)}") from None
        except httpx.HTTPError as exc:
            raise Unreachable(f"cannot reach {without_credentials(url)}: {_first_line(exc)}") from None
        _whole(without_credentials(url), r.headers, r.content)
        return Response(r.status_code, r.content, r.headers, sent, time.time())


def _whole(path: str, headers: Mapping[str, str], body: bytes) -> None:
    """A body shorter or longer than its Content-Length is not the answer that was sent."""
    declared = headers.get("Content-Length")
    if declared is None or headers.get("Content-Encoding") or not declared.isdigit():
        return  # a decompressed body has its own length
    if int(declared) != len(body):
        raise BadPayload(f"GET {path} was cut short: {len(body)} of the {declared} bytes it declared arrived")


def _first_line(exc: object) -> str:
    text = str(exc).strip() or type(exc).__name__
    return without_credentials(text.splitlines()[0][:300])


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
