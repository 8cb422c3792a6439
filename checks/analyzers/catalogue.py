"""The one message catalogue of the configuration analyzers: a stable code, level, template and guide section.

Codes IST0xxx are istioctl analyze's (same code, name and level as Istio's catalogue at 1.28, so a finding can
be looked up in Istio's documentation); the templates are meshbot's own words and always name the field at
fault. Codes MB0xxx are meshbot's own rules, for what no istioctl analyzer checks; they are never reused.

A template is a ``str.format`` string over the values the analyzer passes with its finding. ``section`` is the
common-problems section whose content the message explains; ``None`` for IST0101, whose section is the one of
the analyzer that reports it (a missing subset and a missing gateway are different stories).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

COMMON = "https://istio.io/latest/docs/ops/common-problems/"
# The page of every section a message or an analyzer names (the guide's own anchors, DESIGN.md's section ids).
PAGES = {
    "route-rules-dont-seem-to-affect-traffic-flow": "network-issues",
    "503-errors-after-setting-destination-rule": "network-issues",
    "route-rules-have-no-effect-on-ingress-gateway-requests": "network-issues",
    "sending-https-to-an-http-port": "network-issues",
    "tls-configuration-mistakes": "network-issues",
    "404-errors-occur-when-multiple-gateways-configured-with-same-tls-certificate": "network-issues",
    "unchanged-envoy-filter-configuration-suddenly-stops-working": "network-issues",
    "the-result-of-sidecar-injection-was-not-what-i-expected": "injection",
    "make-sure-the-policy-is-applied-to-the-correct-target": "security-issues",
    "make-sure-you-are-not-using-http-only-fields-on-tcp-ports": "security-issues",
    "ensure-istiod-accepts-the-policies": "security-issues",
    "invalid-configuration-is-accepted": "validation",
}


def guide_url(section: str) -> str:
    return f"{COMMON}{PAGES[section]}/#{section}"


def reference_url(code: str) -> str | None:
    """Istio's page for an istioctl analyze code; meshbot's own codes have none."""
    return f"https://istio.io/latest/docs/reference/config/analysis/{code.lower()}/" if code.startswith("IST") else None


class Level(enum.StrEnum):
    ERROR = "Error"
    WARNING = "Warning"
    INFO = "Info"


@dataclass(frozen=True)
class Message:
    code: str
    name: str
    level: Level
    template: str
    section: str | None

    def text(self, values: dict) -> str:
        return self.template.format(**values)


E, W, INFO = Level.ERROR, Level.WARNING, Level.INFO
ROUTES = "route-rules-dont-seem-to-affect-traffic-flow"
SUBSETS = "503-errors-after-setting-destination-rule"
INGRESS = "route-rules-have-no-effect-on-ingress-gateway-requests"
INJECTION = "the-result-of-sidecar-injection-was-not-what-i-expected"
TARGET = "make-sure-the-policy-is-applied-to-the-correct-target"
FILTERS = "unchanged-envoy-filter-configuration-suddenly-stops-working"

_MESSAGES = (
    Message("IST0101", "ReferencedResourceNotFound", E,
            "{field} refers to {what} {ref}, which does not exist{hint}", None),
    Message("IST0103", "PodMissingProxy", W,
            "pod {pod} runs without istio-proxy although namespace {namespace} is labelled for injection", INJECTION),
    Message("IST0106", "SchemaValidationError", E,
            "{field}: {problem} (the validating webhook would have refused it)", "invalid-configuration-is-accepted"),
    Message("IST0133", "SchemaWarning", W,
            "{field}: {problem} (the validating webhook admits it with a warning)",
            "invalid-configuration-is-accepted"),
    Message("IST0109", "ConflictingMeshGatewayVirtualServiceHosts", E,
            "host {host} is claimed for the mesh by several VirtualServices ({others}); only one of them applies",
            ROUTES),
    Message("IST0110", "ConflictingSidecarWorkloadSelectors", E,
            "spec.workloadSelector selects pod {pod}, which Sidecars {others} select too; which applies is undefined",
            TARGET),
    Message("IST0111", "MultipleSidecarsWithoutWorkloadSelectors", E,
            "has no spec.workloadSelector, like {others} in namespace {namespace}: only one namespace-wide Sidecar "
            "can apply", TARGET),
    Message("IST0112", "VirtualServiceDestinationPortSelectorRequired", E,
            "{field} sends to {host}, which has ports {ports}: the destination must say which (port.number)", ROUTES),
    Message("IST0118", "PortNameIsNotUnderNamingConvention", INFO,
            "spec.ports[{index}] (port {port}, name {name!r}) declares no protocol: the proxies sniff it, and "
            "server-first or TLS traffic on it may break", "sending-https-to-an-http-port"),
    Message("IST0123", "NamespaceMultipleInjectionLabels", W,
            "metadata.labels carry several injection labels ({labels}): which one wins is not what you may expect",
            INJECTION),
    Message("IST0127", "NoMatchingWorkloadsFound", W,
            "{field} ({selector}) selects no workload in the mesh: the policy applies to nothing", TARGET),
    Message("IST0128", "NoServerCertificateVerificationDestinationLevel", W,
            "spec.trafficPolicy.tls.mode {mode} toward {host} sets no caCertificates: the server's certificate "
            "is not verified", "tls-configuration-mistakes"),
    Message("IST0129", "NoServerCertificateVerificationPortLevel", W,
            "spec.trafficPolicy.portLevelSettings[port {port}].tls.mode {mode} toward {host} sets no "
            "caCertificates: the server's certificate is not verified", "tls-configuration-mistakes"),
    Message("IST0132", "VirtualServiceHostNotFoundInGateway", W,
            "spec.hosts {hosts} match none of the hosts Gateway {gateway} serves: the gateway does not route them",
            INGRESS),
    Message("IST0138", "GatewayDuplicateCertificate", W,
            "{field} uses the same certificate as Gateway {other}: browsers reuse the HTTP/2 connection and get 404",
            "404-errors-occur-when-multiple-gateways-configured-with-same-tls-certificate"),
    Message("IST0139", "InvalidWebhook", E, "{field}: {problem}", INJECTION),
    Message("IST0140", "IngressRouteRulesNotAffected", W,
            "{field} routes to {host} without a subset, so the subset routing of VirtualService {other} "
            "does not apply to traffic entering through this gateway", INGRESS),
    Message("IST0145", "ConflictingGateways", E,
            "{field} (port {port}, hosts {hosts}) is also served by Gateway {others} on the same workload "
            "({selector}): only one of them is used", INGRESS),
    Message("IST0150", "ExternalNameServiceTypeInvalidPortName", W,
            "spec.ports[{index}] of this ExternalName Service is named {name!r}: name it tcp-… or with its "
            "protocol so TCP is forwarded", "sending-https-to-an-http-port"),
    Message("IST0151", "EnvoyFilterUsesRelativeOperation", W,
            "{field} uses the relative operation {operation} and spec.priority is not set: where the patch lands "
            "depends on other filters and can move after an upgrade", FILTERS),
    Message("IST0152", "EnvoyFilterUsesReplaceOperationIncorrectly", E,
            "{field} uses REPLACE on applyTo {apply_to}: REPLACE works only on HTTP_FILTER and NETWORK_FILTER, "
            "so the patch is ignored", FILTERS),
    Message("IST0153", "EnvoyFilterUsesAddOperationIncorrectly", E,
            "{field} uses ADD on applyTo {apply_to}, where ADD is ignored", FILTERS),
    Message("IST0154", "EnvoyFilterUsesRemoveOperationIncorrectly", E,
            "{field} uses REMOVE on applyTo {apply_to}, where REMOVE is ignored", FILTERS),
    Message("IST0155", "EnvoyFilterUsesRelativeOperationWithProxyVersion", W,
            "{field} uses the relative operation {operation} on {filter}, which another patch matches by "
            "proxyVersion, and spec.priority is not set: after an upgrade the patch may no longer apply", FILTERS),
    Message("IST0158", "PodsIstioProxyImageMismatchInNamespace", W,
            "{count} pod(s) run istio-proxy images other than the injector's {image}: {pods}", INJECTION),
    Message("IST0162", "GatewayPortNotDefinedOnService", W,
            "spec.servers[{index}].port.number {port} is not a port (or targetPort) of any Service in front of the "
            "gateway pods ({selector}): nothing reaches it", INGRESS),
    Message("IST0165", "ReferencedInternalGateway", W,
            "{field} names {gateway}, a gateway generated from a Kubernetes Gateway or Ingress: refer to the "
            "object it comes from instead", INGRESS),
    Message("IST0167", "IneffectivePolicy", W, "{reason}: a Sidecar resource has no effect there", TARGET),
    Message("IST0171", "NegativeConditionStatus", W,
            "{field} condition {type} is {status} ({reason}): {message}", "ensure-istiod-accepts-the-policies"),
    Message("IST0173", "DestinationRuleSubsetNotSelectPods", E,
            "spec.subsets[{index}] {subset} ({labels}) selects none of the pods of {host}: requests routed to it "
            "get 503 (no healthy upstream)", SUBSETS),
    Message("IST0174", "UnknownDestinationRuleHost", W,
            "spec.host {host} matches no Service or ServiceEntry visible from namespace {namespace}: the rule "
            "applies to nothing", SUBSETS),
    # meshbot's own rules: ambient conditions no istioctl analyzer covers (Kiali validates them alike).
    Message("MB0001", "AmbientL7PolicyWithoutWaypoint", E,
            "{fields} are HTTP attributes, but in ambient namespace {namespace} this policy is enforced by "
            "ztunnel, which sees only L4: {effect}", "make-sure-you-are-not-using-http-only-fields-on-tcp-ports"),
    Message("MB0002", "CrossNamespaceTargetRef", E,
            "{field} names {kind} {ref} in another namespace: a policy may only target objects in its own "
            "namespace ({namespace}), so it is ignored", TARGET),
    Message("MB0003", "TargetRefNotFound", E,
            "{field} names {kind} {ref}, which does not exist: the policy applies to nothing", TARGET),
    Message("MB0004", "WaypointNotFound", E,
            "label istio.io/use-waypoint names waypoint {ref}, which does not exist: traffic gets no L7 "
            "processing and policies meant for the waypoint are not enforced", TARGET),
)

MESSAGES: dict[str, Message] = {m.code: m for m in _MESSAGES}
