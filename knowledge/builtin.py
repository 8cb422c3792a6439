"""Built-in knowledge: one entry per guide section meshbot knows about.

Each check declares its own guide section (``checks.catalog``), and the index adds
to each section the checks that declare it, so an answer can offer to run them;
every section a check declares has an entry here, old guide or new.  The wording is meshbot's own, so the
bot answers usefully with no guide configured.  Symptoms are phrased the way
people report a problem, which lets questions match an entry even when they
share no word with the guide's heading.
"""

from __future__ import annotations

from dataclasses import dataclass

DOCS_URL = "https://istio.io/help/troubleshooting/"


@dataclass(frozen=True)
class Entry:
    section: str
    title: str
    parent: str | None = None
    symptoms: tuple[str, ...] = ()
    looks_at: str = ""
    fix: str = ""
    commands: tuple[str, ...] = ()
    page: str = DOCS_URL  # the guide page the section is on

    @property
    def url(self) -> str:
        return f"{self.page}#{self.section}"


METRICS = "where-are-the-metrics-for-my-service"
DEBUG = "how-can-i-debug-issues-with-the-service-mesh"

ENTRIES: tuple[Entry, ...] = (
    Entry(
        section="verifying-connectivity-to-istio-pilot",
        title="Sidecars cannot reach Pilot",
        symptoms=(
            "proxies get no configuration from the control plane",
            "is pilot up, can the envoy sidecars reach discovery",
            "service registry empty, registration API returns no services",
            "new services are not routable, endpoints never show up",
        ),
        looks_at="Pilot's v1 registration API (plain HTTP on port 8080, reached through the API "
        "server) and whether it lists a service-key and hosts for each service.",
        fix="Make sure the istio-pilot pods are ready and their Service has endpoints, "
        "then query the registration API from a pod inside the mesh.",
        commands=(
            "kubectl -n istio-system get pods -l istio=pilot",
            "curl http://istio-pilot.istio-system:8080/v1/registration",
        ),
    ),
    Entry(
        section="no-traces-appearing-in-zipkin-when-running-istio-locally-on-mac",
        title="Clock skew on the node hides traces",
        symptoms=(
            "no traces or spans in zipkin or jaeger tracing",
            "traces appear days early, timestamps in the past",
            "tracing only shows data with a very long date range",
            "docker for mac time drift, container clock differs from host date",
        ),
        looks_at="each node's last heartbeat, stamped by the node's own clock, compared with the "
        "API server's clock.",
        fix="Resynchronise the node clock. On Docker for Mac, restart Docker "
        "(its VM clock drifts after sleep) and reinstall Istio.",
        commands=("docker run --rm --entrypoint date busybox", "date -u"),
    ),
    Entry(
        section="envoy-wont-connect-to-my-http10-service",
        title="Envoy rejects HTTP/1.0 upstreams",
        symptoms=(
            "426 upgrade required from the sidecar",
            "legacy backend speaks http 1.0 and requests fail through envoy",
            "nginx behind envoy, proxy_pass without proxy_http_version 1.1",
        ),
        looks_at="istio-proxy access logs for HTTP/1.0 requests answered with 426, "
        "and nginx configs that proxy without proxy_http_version 1.1.",
        fix="Have the client or proxy in front of the service speak HTTP/1.1 or "
        "HTTP/2; in nginx add proxy_http_version 1.1 and clear the Connection header.",
        commands=('proxy_http_version 1.1;\nproxy_set_header Connection "";',),
    ),
    Entry(
        section="no-grafana-output-when-connecting-from-a-local-web-client-to-istio-remotely-hosted",
        title="Browser clock skew blanks Grafana",
        symptoms=(
            "grafana dashboards empty, panels show no data from a laptop browser",
            "istio dashboard graphs blank although prometheus has data",
            "workstation clock off, ntp or chrony not running",
        ),
        looks_at="the time reported by the cluster compared with the time of the "
        "machine asking, since Grafana queries with the browser's clock.",
        fix="Run a time service (NTP or chrony) on the cluster nodes and on the "
        "client machine, pointed at a reachable time server.",
        commands=("timedatectl status", "chronyc tracking"),
    ),
    Entry(
        section=METRICS,
        title="Metrics missing for a service",
        symptoms=(
            "no istio metrics for my service in prometheus",
            "service missing from the dashboards, telemetry not collected",
            "how telemetry flows from envoy to mixer to the prometheus adapter",
        ),
        looks_at="each hop of the telemetry pipeline: Envoy reports to Mixer, Mixer "
        "rules and instances, the Prometheus adapter, and Prometheus scraping Mixer; "
        "at the end of it are series such as istio_request_count "
        "(istio_requests_total from 1.0).",
        fix="Run the mixer and prometheus checks; the first hop that fails is where metrics stop.",
    ),
    Entry(
        section="verify-mixer-is-receiving-report-calls",
        title="Mixer receives no Report calls",
        parent=METRICS,
        symptoms=(
            "envoy sidecars not reporting telemetry to mixer",
            "grpc_server_handled_total has no Report method series",
            "mixer self-monitoring shows zero report calls",
        ),
        looks_at="Mixer's self-monitoring metrics (port 9093, /metrics) for "
        'grpc_server_handled_total with grpc_method="Report".',
        fix="If there are no Report calls, the workloads are not in the mesh: check "
        "sidecar injection for the namespace and redeploy the pods.",
        commands=(
            "kubectl -n istio-system port-forward <mixer-pod> 9093",
            "curl -s localhost:9093/metrics | grep grpc_server_handled_total",
        ),
    ),
    Entry(
        section="verify-mixer-metrics-configuration-exists",
        title="Mixer metrics configuration missing",
        parent=METRICS,
        symptoms=(
            "promhttp or promtcp rules missing",
            "no prometheus handler or metric instances configured",
            "mixer config resolution errors for my service",
            "mixer post-install job failed, custom resources not created",
        ),
        looks_at="the Mixer rules, prometheus handler and metric instances "
        "(config.istio.io), mixer_config_resolve_count errors, and the "
        "istio-mixer-post-install job.",
        fix="Reapply the default Mixer telemetry configuration from your Istio "
        "release, then read the mixer container logs for configuration errors.",
        commands=(
            "kubectl get rules.config.istio.io --all-namespaces",
            "kubectl get prometheuses.config.istio.io,metrics.config.istio.io --all-namespaces",
            "kubectl -n istio-system logs <mixer-pod> -c mixer",
        ),
    ),
    Entry(
        section="verify-mixer-is-sending-metric-instances-to-the-prometheus-adapter",
        title="Mixer does not dispatch to the Prometheus adapter",
        parent=METRICS,
        symptoms=(
            "prometheus adapter dispatches failing or zero",
            "mixer_adapter_dispatch_count shows errors for the prometheus handler",
            "report returned with INTERNAL error in mixer logs",
        ),
        looks_at="mixer_adapter_dispatch_count (or mixer_runtime_dispatch_count) for "
        'adapter="prometheus", split by error.',
        fix="No dispatches means the rules are missing; errors mean the handler is "
        "misconfigured. Read the mixer logs around the failing Report.",
        commands=("kubectl -n istio-system logs <mixer-pod> -c mixer | grep Report",),
    ),
    Entry(
        section="verify-prometheus-configuration",
        title="Prometheus does not scrape Mixer",
        parent=METRICS,
        symptoms=(
            "prometheus scrape job istio-mesh missing",
            "istio-mesh target down or unhealthy in prometheus targets",
            "prometheus never scrapes mixer on port 42422",
        ),
        looks_at="the Prometheus configuration for a job scraping Mixer's port 42422, "
        "and the health of the istio-mesh target.",
        fix="Add the istio-mesh scrape job (or fix its selector), reload Prometheus, and confirm the target is up.",
        commands=(
            "kubectl -n istio-system port-forward svc/prometheus 9090",
            "curl -s localhost:9090/api/v1/targets",
        ),
    ),
    Entry(
        section=DEBUG,
        title="Debugging the mesh",
        symptoms=(
            "general debugging tools and tips for the mesh",
            "how to troubleshoot istio step by step",
        ),
        looks_at="nothing by itself; it points at istioctl, gdb and tcpdump.",
        fix="Start with istioctl proxy-config; use gdb or tcpdump from a debug container for lower-level problems.",
    ),
    Entry(
        section="with-istioctl",
        title="Inspect proxy configuration with istioctl",
        parent=DEBUG,
        symptoms=(
            "dump the clusters, listeners, routes or endpoints of an envoy sidecar",
            "see what xds configuration pilot pushed to a pod",
            "istioctl proxy-config pc output",
        ),
        looks_at="nothing; istioctl reads the Envoy admin interface or Pilot's view.",
        fix="Use istioctl proxy-config against the pod.",
        commands=(
            "istioctl proxy-config clusters <pod-name>",
            "istioctl proxy-config endpoints <pod-name>",
        ),
    ),
    Entry(
        section="with-gdb",
        title="Attach gdb to a mesh component",
        parent=DEBUG,
        symptoms=(
            "attach a debugger to envoy, mixer or pilot",
            "goroutine backtrace of a stuck process",
            "debug images and process id for gdb",
        ),
        looks_at="nothing; this needs the debug images.",
        fix="Deploy the debug images, exec into the container, find the process id "
        "and attach gdb (with the Go extensions for Go components).",
        commands=("kubectl exec -it <pod> -c istio-proxy -- ps ax", "gdb -p <pid> <binary>"),
    ),
    Entry(
        section="with-tcpdump",
        title="Capture packets next to the sidecar",
        parent=DEBUG,
        symptoms=(
            "tcpdump permission denied in the sidecar, not running as root",
            "capture or sniff packets of a pod in the mesh",
            "traffic between envoy and the app on localhost is plain text",
        ),
        looks_at="nothing; the sidecar runs unprivileged, so capture from another "
        "container sharing the pod's network namespace.",
        fix="Run tcpdump from an ephemeral debug container in the same pod.",
        commands=("kubectl debug -it <pod> --image=nicolaka/netshoot -- tcpdump -i any",),
    ),
    Entry(
        section="envoy-is-crashing-under-load",
        title="Envoy crashes under load (file descriptors)",
        symptoms=(
            "sidecar restarts or dies under heavy traffic or a load test",
            "too many open files, assert failure fd_ != -1",
            "istio-proxy crash loop when requests spike",
            "ulimit open file descriptor limit 1024",
        ),
        looks_at="the open-file limit of the istio-proxy container and Envoy crash signatures in its logs.",
        fix="Raise the file descriptor limit for the proxy (for example "
        "ulimit -n 16384 or the container runtime's nofile limit).",
        commands=("kubectl exec <pod> -c istio-proxy -- sh -c 'ulimit -n'",),
    ),
    Entry(
        section="headless-tcp-services-losing-connection-from-istiofied-containers",
        title="TCP connections drop when certificates rotate",
        symptoms=(
            "long-lived tcp connections reset every 15 minutes",
            "database, kafka or websocket clients disconnected periodically",
            "headless service connections dropped by the sidecar",
            "citadel certificate rotation restarts envoy",
        ),
        looks_at="whether Citadel is deployed with mTLS while headless TCP services "
        "carry long-lived connections through sidecars.",
        fix="Make clients reconnect on their own. To stop the restarts, disable mTLS "
        "in the mesh config and scale istio-citadel to zero.",
        commands=(
            "kubectl -n istio-system edit configmap istio",
            "kubectl -n istio-system scale deploy/istio-citadel --replicas=0",
        ),
    ),
    Entry(
        section="envoy-process-high-cpu-usage",
        title="Envoy uses CPU while idle (refresh delay)",
        symptoms=(
            "istio-proxy high cpu usage with no traffic on a large cluster",
            "sidecar cpu hot while idle",
            "discovery refresh delay or interval too short, refreshDelay 1s",
            "route changes slow to propagate, temporary 404 after raising the interval",
        ),
        looks_at="the discovery refresh delay in the istio mesh ConfigMap.",
        fix="Raise the refresh delay (for example to 30s), restart Pilot and "
        "re-inject the sidecars; route changes then take up to twice as long.",
        commands=(
            "kubectl -n istio-system edit configmap istio",
            "kubectl -n istio-system delete pods -l istio=pilot",
        ),
    ),
    Entry(
        section="kubernetes-webhook-setup-script-files-are-missing-from-05-release-package",
        title="Webhook certificate scripts missing (0.5)",
        symptoms=(
            "webhook-create-signed-cert.sh or webhook-patch-ca-bundle.sh not found",
            "release tarball lacks the scripts that provision injector certificates",
        ),
        looks_at="the sidecar injector's webhook certificate Secret and the CA bundle "
        "of its MutatingWebhookConfiguration.",
        fix="Fetch the two scripts from the release-0.7 branch of istio/istio, or upgrade past 0.5.1.",
    ),
    Entry(
        section="automatic-sidecar-injection-will-fail-if-the-kube-apiserver-has-proxy-settings",
        title="Injection fails when the API server uses a proxy",
        symptoms=(
            "automatic sidecar injection not working, pods start without istio-proxy",
            "failed calling admission webhook sidecar-injector service unavailable",
            "kube-apiserver http_proxy https_proxy no_proxy settings",
        ),
        looks_at="proxy environment variables on the kube-apiserver and webhook failures in its logs.",
        fix="Add the pod and service CIDRs (and .svc) to no_proxy, or remove the proxy "
        "settings from the kube-apiserver manifest and restart it.",
    ),
)

COMMON = "https://istio.io/latest/docs/ops/common-problems/"
INJECTION, NETWORK, SECURITY, VALIDATION = (f"{COMMON}{page}/" for page in
                                            ("injection", "network-issues", "security-issues", "validation"))

# Sections of istio.io's "Common problems" pages that the istiod checks answer.
MODERN_ENTRIES: tuple[Entry, ...] = (
    Entry(
        section="the-result-of-sidecar-injection-was-not-what-i-expected",
        title="Pods injected, or not, against expectations",
        page=INJECTION,
        symptoms=(
            "pod has no istio-proxy container although the namespace is labelled",
            "pods started before the namespace label never got a sidecar",
            "sidecar injected twice, or from the wrong revision during a canary upgrade",
            "proxies still run the old version after upgrading istiod",
        ),
        looks_at="the injection webhooks' namespace and object selectors against every pod's labels, as "
        "istioctl x check-inject does, and each proxy's version against its revision's istiod.",
        fix="Label the namespace for the revision you want, then restart its workloads so their pods are "
        "created again through the webhook.",
        commands=("kubectl get namespace -L istio-injection -L istio.io/rev",
                  "kubectl -n NAMESPACE rollout restart deployment"),
    ),
    Entry(
        section="pods-cannot-be-created-at-all",
        title="The injection webhook refuses pod creation",
        page=INJECTION,
        symptoms=(
            "replicaset events say failed calling webhook sidecar-injector",
            "deployment stuck with zero pods after istio install",
            "no endpoints available for service istiod when creating pods",
        ),
        looks_at="FailedCreate events and why the API server could not call istiod's webhook.",
        fix="Bring istiod back (its pods and Service endpoints), or fix what stands between the API server "
        "and istiod on port 15017, then let the controllers create the pods again.",
        commands=("kubectl get events -A --field-selector reason=FailedCreate",),
    ),
    Entry(
        section="x509-certificate-related-errors",
        title="Webhook calls fail on an untrusted certificate",
        page=INJECTION,
        parent="pods-cannot-be-created-at-all",
        symptoms=(
            "pods refused because the api server does not trust the injection webhook certificate",
            "webhook caBundle does not match the istio root certificate",
        ),
        looks_at="each Istio webhook's caBundle against the root certificate istiod publishes in "
        "istio-ca-root-cert.",
        fix="Restart istiod so it patches the webhooks' caBundle again, and make sure no GitOps tool "
        "resets the field.",
        commands=("kubectl get mutatingwebhookconfigurations -o yaml | grep caBundle",
                  "kubectl -n istio-system rollout restart deployment istiod"),
    ),
    Entry(
        section="503-errors-after-setting-destination-rule",
        title="503s after a DestinationRule",
        page=NETWORK,
        symptoms=(
            "requests return 503 right after applying a destination rule",
            "upstream connect error or disconnect reset before headers after enabling mtls",
            "subset routing gives no healthy upstream",
        ),
        looks_at="DestinationRule TLS modes against the PeerAuthentication in force, and subsets that "
        "select no pod.",
        fix="Use ISTIO_MUTUAL (or no tls block at all, letting auto mTLS decide) toward STRICT workloads, "
        "and make each subset's labels match running pods.",
        commands=("kubectl get destinationrules,peerauthentications -A",),
    ),
    Entry(
        section="unchanged-envoy-filter-configuration-suddenly-stops-working",
        title="An EnvoyFilter broke after an upgrade",
        page=NETWORK,
        symptoms=(
            "envoy filter stopped working after upgrading istio",
            "proxies reject configuration from istiod, listeners missing",
        ),
        looks_at="istiod's xDS reject gauges and EnvoyFilters whose relative patches or proxyVersion match "
        "no longer fit the running proxies.",
        fix="Give relative patches a priority and match proxyVersion to the versions you run; remove "
        "filters the new release makes unnecessary.",
        commands=("kubectl get envoyfilters -A",),
    ),
    Entry(
        section="invalid-configuration-is-accepted",
        title="Invalid configuration is accepted",
        page=VALIDATION,
        symptoms=(
            "kubectl apply accepts a broken virtual service without any error",
            "validation webhook never rejects bad istio config",
        ),
        looks_at="Istio's validating webhooks: their failure policy, caBundle and Service.",
        fix="Get istiod ready so it arms the validating webhook (failurePolicy Fail), then re-apply the "
        "configuration to see what it rejects.",
        commands=("kubectl get validatingwebhookconfigurations -o yaml | grep -e failurePolicy -e caBundle",),
    ),
    Entry(
        section="keys-and-certificates-errors",
        title="Workload certificates expire or do not rotate",
        page=SECURITY,
        symptoms=(
            "mtls handshakes fail with certificate expired",
            "workload certificate not rotated, root ca about to expire",
        ),
        looks_at="the proxies' certificate expiry metrics, the CA's root expiry and the root certificate "
        "in every namespace.",
        fix="Restart the proxies whose certificates stopped rotating; renew the root before it expires and "
        "let istiod redistribute it.",
        commands=("istioctl proxy-config secret POD -n NAMESPACE",),
    ),
)
# Sections the configuration analyzers (checks.analyzers, `meshbot check config`) explain.
CONFIG_ENTRIES: tuple[Entry, ...] = (
    Entry(
        section="route-rules-dont-seem-to-affect-traffic-flow",
        title="A VirtualService has no visible effect",
        page=NETWORK,
        symptoms=(
            "virtual service applied but traffic still goes to every version",
            "route rule ignored, requests not split by weight",
            "two virtual services for the same host, one seems ignored",
            "route rules do nothing because the service port name does not say http",
        ),
        looks_at="every route destination of each VirtualService against the Services and ServiceEntries visible "
        "from its namespace (host, port), and hosts claimed by several mesh VirtualServices.",
        fix="Point each destination at a host that exists (the full NAME.NAMESPACE.svc.cluster.local across "
        "namespaces), give multi-port destinations a port, and keep one VirtualService per host.",
        commands=("istioctl analyze -A", "kubectl get virtualservices -A"),
    ),
    Entry(
        section="route-rules-have-no-effect-on-ingress-gateway-requests",
        title="Ingress traffic ignores the route rules",
        page=NETWORK,
        symptoms=(
            "requests through the ingress gateway return 404",
            "gateway selector matches no ingress pod",
            "virtual service bound to a gateway that does not serve its host",
            "subset routing works inside the mesh but not from the ingress",
            "which gateways to list in the virtual service: the gateway name and mesh",
        ),
        looks_at="each Gateway's selector against the gateway pods and their Service ports, each VirtualService's "
        "spec.gateways against the Gateways and the hosts they serve, and conflicting Gateways on one workload.",
        fix="Bind the VirtualService to the Gateway by NAMESPACE/NAME with a host the Gateway serves, select the "
        "gateway pods' own labels, and expose every server port on the gateway's Service.",
        commands=("kubectl get gateways.networking.istio.io -A",
                  "istioctl proxy-config routes deploy/istio-ingressgateway -n istio-system"),
    ),
    Entry(
        section="tls-configuration-mistakes",
        title="TLS set up in the wrong place",
        page=NETWORK,
        symptoms=(
            "tls origination to an external service does not verify the certificate",
            "destination rule simple tls without ca certificates",
        ),
        looks_at="DestinationRules that originate TLS (SIMPLE, MUTUAL) and whether they verify the server.",
        fix="Give TLS origination the CA that signed the server's certificate (caCertificates or a credentialName "
        "with ca.crt).",
        commands=("kubectl get destinationrules -A -o yaml | grep -B3 -A6 'mode: SIMPLE'",),
    ),
    Entry(
        section="sending-https-to-an-http-port",
        title="A port's protocol is not declared",
        parent="tls-configuration-mistakes",
        page=NETWORK,
        symptoms=(
            "service port has no name so istio guesses the protocol",
            "https sent to a port named http fails",
            "server first protocol hangs through the sidecar",
            "SSL routines:ssl3_get_record:wrong version number",
        ),
        looks_at="every Service port's name prefix and appProtocol, which is how Istio learns its protocol.",
        fix="Name each port after its protocol (http-web, grpc, tcp-db, https) or set appProtocol.",
        commands=("kubectl get svc -A -o custom-columns=NS:.metadata.namespace,NAME:.metadata.name,"
                  "PORTS:.spec.ports[*].name",),
    ),
    Entry(
        section="404-errors-occur-when-multiple-gateways-configured-with-same-tls-certificate",
        title="404s from gateways that share one certificate",
        parent="tls-configuration-mistakes",
        page=NETWORK,
        symptoms=(
            "second host on the ingress answers 404 in the browser but works with curl",
            "two gateways use the same wildcard certificate",
        ),
        looks_at="Gateways on the same workload whose servers use the same credentialName or certificate files.",
        fix="Serve hosts that share a certificate from one Gateway, or give each Gateway its own certificate.",
        commands=("kubectl get gateways.networking.istio.io -A -o yaml | grep credentialName",),
    ),
    Entry(
        section="make-sure-the-policy-is-applied-to-the-correct-target",
        title="A policy applies to nothing",
        page=SECURITY,
        symptoms=(
            "authorization policy has no effect at all",
            "policy selector matches no pods",
            "targetRefs point at a service that does not exist",
            "sidecar resource selects no workload",
        ),
        looks_at="the selectors and targetRefs of AuthorizationPolicies, Sidecars and other policies against the "
        "workloads, Services and waypoints that exist, and namespaces the rules name.",
        fix="Select the labels of meshed pods in the policy's own namespace (or the root namespace for the whole "
        "mesh), and target objects of the policy's namespace.",
        commands=("kubectl get authorizationpolicies,sidecars -A", "istioctl x authz check POD -n NAMESPACE"),
    ),
    Entry(
        section="make-sure-you-are-not-using-http-only-fields-on-tcp-ports",
        title="HTTP rules where only L4 is enforced",
        page=SECURITY,
        symptoms=(
            "ambient authorization policy with paths or methods denies everything",
            "ztunnel ignores http rules in an authorization policy",
            "l7 policy in an ambient namespace without a waypoint",
        ),
        looks_at="AuthorizationPolicies in ambient namespaces that use HTTP attributes while ztunnel enforces them, "
        "and waypoints that the use-waypoint labels name.",
        fix="Deploy a waypoint for the namespace and attach HTTP rules to it with targetRefs; keep selector-bound "
        "policies to L4 attributes (ports, principals, namespaces).",
        commands=("istioctl waypoint apply -n NAMESPACE --enroll-namespace", "istioctl waypoint list -A"),
    ),
    Entry(
        section="ensure-istiod-accepts-the-policies",
        title="istiod reports an object as not accepted",
        page=SECURITY,
        symptoms=(
            "authorization policy status says ztunnel accepted false",
            "service waypoint bound false",
            "gateway programmed false, httproute not accepted",
        ),
        looks_at="the status conditions istiod and the Gateway API controller write on Services, ServiceEntries, "
        "AuthorizationPolicies, Gateways and routes.",
        fix="Read the condition's reason and message; fix the reference or the unsupported field it names, then "
        "watch the condition turn True.",
        commands=("kubectl get authorizationpolicy -A -o yaml | grep -A5 conditions",),
    ),
)
ENTRIES = ENTRIES + MODERN_ENTRIES + CONFIG_ENTRIES
