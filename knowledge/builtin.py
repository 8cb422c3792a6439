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
    same_as: tuple[str, ...] = ()  # the ids of sections of other guides on the same problem

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
            "quick manual test from inside a mesh pod that the discovery server answers",
            "envoys lost contact with the control plane or discovery service",
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
            "old clients, benchmark tools or probes that speak HTTP/1.0 get 426 from the sidecar",
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
        same_as=("missing-grafana-output",),
        symptoms=(
            "grafana dashboards empty, panels show no data from a laptop browser",
            "istio dashboard graphs blank although prometheus has data",
            "workstation clock off, ntp or chrony not running",
            "grafana empty for one user and fine for another looking at the same cluster",
            "the browser's computer clock differs from the cluster's, so the time range shows nothing",
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
            "where to start when a service has no metrics: follow each hop the telemetry takes",
            "istio_request_count or istio_requests_total has no series or no data for one service",
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
            "which tools look inside the mesh when something misbehaves: istioctl, a debugger, packet captures",
            "overview of ways to inspect and introspect proxies and control plane, a debugging toolbox",
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
        same_as=("limitations-for-using-tcpdump-in-pods",),
        parent=DEBUG,
        symptoms=(
            "tcpdump permission denied in the sidecar, not running as root",
            "capture or sniff packets of a pod in the mesh",
            "traffic between envoy and the app on localhost is plain text",
            "tcpdump in the istio-proxy container fails with operation not permitted or no permission to capture",
            "get a pcap of a pod's traffic, capture on eth0 or any interface",
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
            "envoy crashes once its concurrent connections exceed the open file limit",
            "the proxy falls over only at high request rates or many connections, fine when traffic is low",
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
            "connections through the mesh drop on a fixed schedule, when the proxy's certificate is refreshed",
            "consumer or pool connection counts fall to zero and recover in a sawtooth",
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
        same_as=("automatic-sidecar-injection-fails-if-the-kubernetes-api-server-has-proxy-settings",),
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
INJECTION, NETWORK, OBSERVABILITY, SECURITY, UPGRADE, VALIDATION = (
    f"{COMMON}{page}/" for page in ("injection", "network-issues", "observability-issues", "security-issues",
                                    "upgrade-issues", "validation"))

# What each page is about, in a few words: the context of its sections, as a guide page's title is.
TOPICS = {INJECTION: "sidecar injection webhook", NETWORK: "traffic management networking",
          OBSERVABILITY: "observability telemetry", SECURITY: "security authentication authorization",
          UPGRADE: "upgrade", VALIDATION: "configuration validation webhook"}

# Sections of istio.io's "Common problems" pages that the istiod checks answer.
MODERN_ENTRIES: tuple[Entry, ...] = (
    Entry(
        section="the-result-of-sidecar-injection-was-not-what-i-expected",
        title="Pods injected, or not, against expectations",
        page=INJECTION,
        symptoms=(
            "istioctl analyze: IST0102 NamespaceNotInjected, IST0103 PodMissingProxy",
            "istioctl analyze: IST0123 NamespaceMultipleInjectionLabels",
            "istioctl analyze: IST0158 PodsIstioProxyImageMismatchInNamespace",
            "pod has no istio-proxy container although the namespace is labelled",
            "pods started before the namespace label never got a sidecar",
            "no sidecar for pods with hostNetwork: true, or in kube-system and kube-public",
            "sidecar.istio.io/inject set on the deployment's own metadata instead of the pod template is ignored",
            "namespaceSelector or injection policy in the istio-sidecar-injector configmap decides against injection",
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
            "pods cannot be created at all in a namespace with injection",
            "replicaset never creates the pods, the deployment stays at 0 ready",
            "deployment stuck with zero pods, kubectl describe shows the injection webhook failing",
            "replicaset events: FailedCreate, failed calling webhook sidecar-injector",
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
            "failed calling admission webhook sidecar-injector.istio.io: "
            "Post https://istiod.istio-system.svc:443/inject: x509: certificate signed by unknown authority",
            "mutating webhook caBundle empty or not matching the istio root certificate",
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
            "istioctl analyze: IST0173 DestinationRuleSubsetNotSelectPods",
            "requests return 503 right after applying a destination rule",
            "upstream connect error or disconnect reset before headers after enabling mtls",
            "subset routing gives no healthy upstream",
            "503s begin when a destination rule is applied and stop when it is deleted or rolled back",
            "a destination rule without a tls block, auto mtls off, sends plain text to workloads requiring mtls",
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
            "istioctl analyze: IST0151 EnvoyFilterUsesRelativeOperation, IST0155 with proxyVersion",
            "INSERT_BEFORE or INSERT_AFTER patch silently dropped from the filter chain",
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
            "inspect or decode the certificate chain a sidecar holds, with istioctl proxy-config secret and openssl",
            "workload certificate shows the wrong spiffe identity, namespace or service account in its SAN",
            "certificate expiry of a proxy is in the past, the cert it serves is stale",
        ),
        looks_at="the proxies' certificate expiry metrics, the CA's root expiry and the root certificate "
        "in every namespace.",
        fix="Restart the proxies whose certificates stopped rotating; renew the root before it expires and "
        "let istiod redistribute it.",
        commands=("istioctl proxy-config secret POD -n NAMESPACE",),
    ),
)
# The other sections of the "Common problems" pages, which no check answers: how people report each
# problem, in meshbot's words, so that a question finds its section without the guide's wording.
GUIDE_ENTRIES: tuple[Entry, ...] = (
    Entry(
        section="errors-in-deployment-status",
        title="Pod creation fails while istiod is down",
        page=INJECTION,
        parent="pods-cannot-be-created-at-all",
        symptoms=(
            "replicaset cannot create pods because istiod was not running or not ready",
            "Error creating: Internal error occurred: failed calling webhook namespace.sidecar-injector.istio.io",
            "failed to call webhook: Post https://istiod.istio-system.svc:443/inject: connect: connection refused",
            "istiod pod crashlooping or its endpoints empty, so new pods are refused",
        ),
        fix="Read the namespace events for the webhook error, then get istiod running with ready endpoints "
        "(its logs and describe say why it is not); the replicaset retries on its own.",
        commands=("kubectl get events -n NAMESPACE", "kubectl -n istio-system get pod -l app=istiod",
                  "kubectl -n istio-system get endpoints istiod"),
    ),
    Entry(
        section="cluster-is-not-scaled-down-automatically",
        title="The cluster autoscaler keeps nodes with injected pods",
        page=INJECTION,
        symptoms=(
            "cluster autoscaler never removes underused nodes that run meshed pods",
            "node scale down blocked: pod has local storage (the sidecar's emptyDir volume)",
            "nodes are not drained or evicted by the autoscaler since we installed istio",
            "the node pool stays at its maximum size with little load, nodes with injected workloads never removed",
        ),
        fix="Mark the injected pods as safe to evict with the annotation "
        "cluster-autoscaler.kubernetes.io/safe-to-evict: \"true\" in their pod template.",
        commands=('kubectl annotate pod POD cluster-autoscaler.kubernetes.io/safe-to-evict="true"',),
    ),
    Entry(
        section="pod-or-containers-start-with-network-issues-if-istio-proxy-is-not-ready",
        title="The app starts before its sidecar is ready",
        page=INJECTION,
        symptoms=(
            "Envoy proxy is NOT ready while the application container already runs",
            "application container fails or restarts at startup because it has no network yet",
            "init scripts or startup probes cannot connect until istio-proxy is ready",
            "app crashes on boot with connection refused, works after a restart of the container",
            "race between the app and the sidecar at pod start",
            "make the application container wait until the sidecar is ready before it starts",
        ),
        fix="Make the proxy start first and hold the other containers until it is ready: "
        "holdApplicationUntilProxyStarts: true, mesh-wide or per pod in the proxy.istio.io/config annotation.",
        commands=("""kubectl patch deployment NAME -p '{"spec":{"template":{"metadata":{"annotations":"""
                  """{"proxy.istio.io/config":"{\\"holdApplicationUntilProxyStarts\\": true}"}}}}}'""",),
    ),
    Entry(
        section="requests-are-rejected-by-envoy",
        title="Envoy rejects requests: read the response flags",
        page=NETWORK,
        symptoms=(
            "requests fail and the istio-proxy access log shows a response flag after the status code",
            "503 NR no route configured, 503 UO upstream overflow from circuit breaking",
            "503 UF upstream connection failure, UH no healthy upstream, URX retries exhausted",
            "what does a response flag like NR, UF or UO mean in the envoy access log",
            "404 NR route_not_found in the access log: no route matched the request",
            "custom access log format without %RESPONSE_FLAGS%",
        ),
        fix="Read the proxy's access log and look up the response flag: NR points at routing (VirtualService "
        "or DestinationRule), UO at circuit-breaker limits, UF at a connection or mutual TLS conflict.",
        commands=("kubectl logs POD -c istio-proxy -n NAMESPACE",),
    ),
    Entry(
        section="route-rules-dont-seem-to-affect-traffic-flow",
        title="Route rules do not change where traffic goes",
        page=NETWORK,
        symptoms=(
            "istioctl analyze: IST0118 PortNameIsNotUnderNamingConvention",
            "pilot_proxy_convergence_time high, new routes take seconds to reach every sidecar",
            "weighted routing between versions is ignored, traffic still spread evenly (round robin)",
            "virtual service route rules have no effect for my own application",
            "new routing rule takes a while before the sidecars apply it",
            "service port not named for its protocol so L7 routing does not apply",
        ),
        looks_at="every route destination of each VirtualService against the Services and ServiceEntries visible "
        "from its namespace (host, port), and hosts claimed by several mesh VirtualServices.",
        fix="Send enough requests (about a hundred) before judging weights; check that the Kubernetes "
        "Service and pods meet Istio's requirements (named ports, app and version labels); allow a few "
        "seconds for configuration to reach every proxy.",
        commands=("istioctl proxy-status", "istioctl analyze -n NAMESPACE"),
    ),
    Entry(
        section="route-rules-have-no-effect-on-ingress-gateway-requests",
        title="Routing to a subset works inside the mesh but not through the gateway",
        page=NETWORK,
        symptoms=(
            "istioctl analyze: IST0140 IngressRouteRulesNotAffected, subset has no effect on ingress gateway requests",
            "requests through the ingress gateway ignore the subset routing of the service's virtual service",
            "internal calls go to v1 but calls from outside the cluster round robin across all versions",
            "virtual service bound to the gateway does not apply the mesh-internal routing rules",
        ),
        looks_at="each Gateway's selector against the gateway pods and their Service ports, each VirtualService's "
        "spec.gateways against the Gateways and the hosts they serve, and conflicting Gateways on one workload.",
        fix="Requests from the gateway follow the VirtualService bound to the gateway (its host), so put "
        "the subset there too, or merge both into one VirtualService listing both the gateway and mesh.",
        commands=("kubectl get virtualservices -A", "istioctl proxy-config routes deploy/istio-ingressgateway -n "
                  "istio-system"),
    ),
    Entry(
        section="503-error-while-accessing-headless-services",
        title="503 calling a headless service by pod IP",
        page=NETWORK,
        symptoms=(
            "curl to a statefulset pod IP through a headless service returns 503 UC",
            "headless service with clusterIP None answers 503 with strict mtls, works by DNS name",
            "request goes through PassthroughCluster and the server sidecar finds no route",
            "calling a pod ip directly fails unless I set the Host header",
        ),
        fix="Call the pod by its DNS name (pod.service.namespace), send a Host header naming the service, or "
        "name the port tcp (tcp-NAME) so the sidecars treat it as plain TCP.",
        commands=('curl -H "Host: SERVICE.NAMESPACE" POD_IP', "curl POD.SERVICE.NAMESPACE"),
    ),
    Entry(
        section="tls-configuration-mistakes",
        title="TLS settings that break traffic",
        page=NETWORK,
        symptoms=(
            "traffic fails after a tls setting on a gateway, service entry or destination rule",
            "misconfigured tls between the gateway, the sidecars and the application",
            "list of the common tls configuration mistakes in gateways, service entries and destination rules",
        ),
        looks_at="DestinationRules that originate TLS (SIMPLE, MUTUAL) and whether they verify the server.",
        fix="Find which of the common mismatches applies: HTTPS sent to a port declared HTTP, a gateway and "
        "virtual service disagreeing on TLS, TLS originated twice, one certificate on several gateways, "
        "or SNI routing without SNI.",
    ),
    Entry(
        section="sending-https-to-an-http-port",
        title="HTTPS sent to a port declared HTTP",
        page=NETWORK,
        parent="tls-configuration-mistakes",
        symptoms=(
            "curl: (35) error:1408F10B:SSL routines:ssl3_get_record:wrong version number",
            "service entry port 443 declared with protocol HTTP and the app sends https",
            "access log shows 400 DPE for https requests to an external host",
        ),
        looks_at="every Service port's name prefix and appProtocol, which is how Istio learns its protocol.",
        fix="Declare the port's protocol as HTTPS (and name it https) when the application sends TLS itself.",
        commands=("kubectl get serviceentries -A -o yaml",),
    ),
    Entry(
        section="gateway-mismatch",
        title="Gateway and virtual service disagree on TLS",
        page=NETWORK,
        parent="tls-configuration-mistakes",
        symptoms=(
            "404 from the ingress gateway: it terminates tls (mode SIMPLE) but the virtual service has tls routes",
            "gateway in PASSTHROUGH mode while the virtual service only has http routes, rules have no effect",
            "sniHosts match never applies behind a gateway that terminates TLS",
        ),
        fix="Match the routing to what the gateway does: http routes when it terminates TLS (SIMPLE), tls "
        "routes with sniHosts when it passes TLS through, or change the gateway's tls mode.",
        commands=("istioctl proxy-config routes deploy/istio-ingressgateway -n istio-system",
                  "istioctl proxy-config listener deploy/istio-ingressgateway -n istio-system"),
    ),
    Entry(
        section="double-tls",
        title="TLS originated for a request that is already TLS",
        page=NETWORK,
        parent="tls-configuration-mistakes",
        symptoms=(
            "destination rule with tls mode SIMPLE toward an external host and the app also uses https",
            "requests encrypted twice, wrong version number errors from curl https",
            "tls origination at the sidecar while the service entry port says HTTPS",
        ),
        fix="Let the application send plain HTTP and the sidecar originate TLS: declare the ServiceEntry port "
        "as HTTP (optionally port 80 with targetPort 443).",
        commands=("kubectl get destinationrules,serviceentries -A",),
    ),
    Entry(
        section="404-errors-occur-when-multiple-gateways-configured-with-same-tls-certificate",
        title="404s when gateways share one certificate",
        page=NETWORK,
        parent="tls-configuration-mistakes",
        symptoms=(
            "istioctl analyze: IST0138 GatewayDuplicateCertificate",
            "browser gets 404 on the second host after visiting the first, curl works fine",
            "two gateways with the same wildcard certificate on one ingress gateway deployment",
            "http2 connection reuse across hosts sends requests to the wrong gateway server",
        ),
        looks_at="Gateways on the same workload whose servers use the same credentialName or certificate files.",
        fix="Use one Gateway with the wildcard host for every host that shares the certificate, and bind each "
        "VirtualService to it.",
        commands=("kubectl get gateways -A",),
    ),
    Entry(
        section="configuring-sni-routing-when-not-sending-sni",
        title="HTTPS gateway hosts need SNI",
        page=NETWORK,
        parent="tls-configuration-mistakes",
        symptoms=(
            "curl: (35) OpenSSL SSL_connect: SSL_ERROR_SYSCALL calling the gateway by IP address",
            "https to the gateway fails when calling it by IP with a Host header",
            "cloud load balancer terminates tls and does not forward SNI, gateway drops the connection",
            "load balancer health checks pass but real traffic through the https gateway fails",
        ),
        fix="Send SNI (use DNS or curl --resolve), pass TLS through the load balancer, or set the Gateway "
        "server's hosts to * so it does not match on SNI.",
        commands=("curl --resolve HOST:443:GATEWAY_IP https://HOST/",),
    ),
    Entry(
        section="virtual-service-with-fault-injection-and-retrytimeout-policies-not-working-as-expected",
        title="Fault injection disables retries and timeouts on the same route",
        page=NETWORK,
        symptoms=(
            "retries configured but injected aborts still fail half the requests",
            "fault abort and retries in one virtual service, the retry policy is ignored",
            "timeout or retry settings stop working once a fault block is added",
        ),
        fix="Keep retries and timeouts in the VirtualService and inject the fault in the upstream proxy "
        "instead, with an EnvoyFilter adding envoy.fault on the inbound side.",
        commands=("kubectl get virtualservice NAME -o yaml",),
    ),
    Entry(
        section="verify-istio-cni-pods-are-running-if-used",
        title="The Istio CNI node agent is not running",
        page=OBSERVABILITY,
        symptoms=(
            "istio_cni_install_ready is 0 on some nodes",
            "istio-cni-node daemonset pods not running in kube-system",
            "pods start without traffic redirection when the cni plugin is used instead of istio-init",
            "PodSecurityPolicy blocks NET_ADMIN and NET_RAW for the istio-cni service account",
        ),
        fix="Check that an istio-cni-node pod runs on every node, and that its service account may use the "
        "capabilities it needs.",
        commands=("kubectl -n kube-system get pod -l k8s-app=istio-cni-node",),
    ),
    Entry(
        section="end-user-authentication-fails",
        title="JWT end-user authentication fails",
        page=SECURITY,
        symptoms=(
            "requests with a jwt bearer token get 401 Jwt issuer is not configured or Jwt verification fails",
            "RequestAuthentication policy rejects valid tokens, jwks cannot be fetched",
            "jwksUri or issuer openid-configuration url not reachable from istiod",
            "expired jwt token in the Authorization header",
            "no envoy.filters.http.jwt_authn filter on the workload's listener",
        ),
        fix="Check the issuer and jwksUri (the issuer's /.well-known/openid-configuration must load), decode "
        "the token to see it is valid and unexpired, and look for the jwt_authn filter on the inbound listener.",
        commands=("istioctl proxy-config listener POD -n NAMESPACE --port 80 -o json | grep -A5 jwt_authn",),
    ),
    Entry(
        section="authorization-is-too-restrictive-or-permissive",
        title="Authorization policy denies or allows the wrong requests",
        page=SECURITY,
        symptoms=(
            "RBAC: access denied 403 after applying an AuthorizationPolicy",
            "authorization policy lets through requests it should block",
            "requests unexpectedly denied by an istio policy",
            "checklist for an authorization policy that misbehaves: usual mistakes in rules, fields, target, action",
            "some requests allowed that should be denied and others denied that should be allowed",
        ),
        fix="Check the policy's rules (one rule or several), the fields used on TCP ports, the target it "
        "selects and its action; istioctl x authz check shows what applies to a pod.",
        commands=("istioctl x authz check POD.NAMESPACE",),
    ),
    Entry(
        section="make-sure-there-are-no-typos-in-the-policy-yaml-file",
        title="A stray dash splits one policy rule into two",
        page=SECURITY,
        parent="authorization-is-too-restrictive-or-permissive",
        symptoms=(
            "policy meant to require both path and source namespace allows either one",
            "extra - before from: in the rules list makes the policy more permissive",
            "rules in an authorization policy are ORed instead of ANDed",
            "are the entries of a rules list combined with AND or OR, the policy allows too much",
        ),
        fix="Put to and from in the same rule (no dash before the second) so both must match.",
        commands=("kubectl get authorizationpolicy NAME -n NAMESPACE -o yaml",),
    ),
    Entry(
        section="make-sure-you-are-not-using-http-only-fields-on-tcp-ports",
        title="HTTP-only policy fields on a TCP port",
        page=SECURITY,
        parent="authorization-is-too-restrictive-or-permissive",
        symptoms=(
            "authorization policy with paths, methods or headers denies everything on a tcp service",
            "port not named http- so the policy's http conditions never match",
            "a policy with methods or paths blocks all traffic to a database or another plain tcp service",
            "request principals or jwt conditions on a plain tcp port",
            "tcp rbac denied counters climb after a policy with http conditions is applied",
        ),
        looks_at="AuthorizationPolicies in ambient namespaces that use HTTP attributes while ztunnel enforces "
        "them, and waypoints that the use-waypoint labels name.",
        fix="Name the Service port with its protocol (http-…) when the policy uses HTTP fields, or drop those "
        "fields for TCP traffic.",
        commands=("kubectl get service NAME -o yaml",),
    ),
    Entry(
        section="make-sure-the-policy-is-applied-to-the-correct-target",
        title="The policy selects the wrong workloads",
        page=SECURITY,
        parent="authorization-is-too-restrictive-or-permissive",
        symptoms=(
            "istioctl analyze: IST0127 NoMatchingWorkloadsFound, no matching workloads for this resource",
            "authorization policy has no effect on my workload",
            "policy in the wrong namespace or its selector matchLabels do not match the pods",
            "which authorization policies apply to this pod",
        ),
        looks_at="the selectors and targetRefs of AuthorizationPolicies, Sidecars and other policies against the "
        "workloads, Services and waypoints that exist, and namespaces the rules name.",
        fix="Check the policy's namespace and workload selector, and list what applies to the pod.",
        commands=("istioctl x authz check POD.NAMESPACE",),
    ),
    Entry(
        section="pay-attention-to-the-action-specified-in-the-policy",
        title="Policy actions: ALLOW by default, DENY wins, AUDIT never blocks",
        page=SECURITY,
        parent="authorization-is-too-restrictive-or-permissive",
        symptoms=(
            "policy without an action behaves as ALLOW and denies everything else",
            "an ALLOW policy that matches no request denies every request to the workload",
            "DENY and ALLOW policies on the same workload, request rejected although one allows it",
            "AUDIT policy does not block anything",
            "CUSTOM action with an external authorizer combined with allow policies",
        ),
        fix="Remember that a request must pass every action applied to the workload: any DENY (or CUSTOM) "
        "refusal wins, ALLOW policies then need one match, and AUDIT only logs.",
    ),
    Entry(
        section="ensure-istiod-accepts-the-policies",
        title="Check that istiod converts the policies",
        page=SECURITY,
        symptoms=(
            "see whether istiod processed my authorization policy",
            "turn on authorization debug logs in istiod",
            "istiod logs errors while generating rbac filters for a policy",
            "istiod logs say nothing about an authorization policy until the log level is raised",
            "confirm the control plane translated a policy into envoy filter configuration without errors",
        ),
        looks_at="the status conditions istiod and the Gateway API controller write on Services, ServiceEntries, "
        "AuthorizationPolicies, Gateways and routes.",
        fix="Raise istiod's authorization log level, re-apply the policy, and read the discovery container's "
        "log for the filters it built for each workload.",
        commands=("istioctl admin log --level authorization:debug",
                  "kubectl -n istio-system logs deploy/istiod -c discovery"),
    ),
    Entry(
        section="ensure-istiod-distributes-policies-to-proxies-correctly",
        title="Check that the proxy received the policy",
        page=SECURITY,
        symptoms=(
            "config_dump of the sidecar has no envoy.filters.http.rbac filter",
            "istioctl proxy-config listener shows no rbac filter for the authorization policy",
            "the proxy rejects the listener with the policy's filter (LDS NACK)",
            "authorization policy applied but the proxy configuration does not change",
            "policy not pushed to the envoy of the workload",
        ),
        fix="Dump the proxy's configuration and look for the RBAC filter and its rules; it should change "
        "when the policy does.",
        commands=("kubectl exec POD -c istio-proxy -- pilot-agent request GET config_dump | grep -A20 "
                  "envoy.filters.http.rbac",),
    ),
    Entry(
        section="ensure-proxies-enforce-policies-correctly",
        title="Check how the proxy decides each request",
        page=SECURITY,
        symptoms=(
            "turn on rbac:debug logging in the sidecar to see each authorization decision",
            "istio-proxy log: rbac enforced denied, matched policy ns[NAMESPACE]-policy[NAME]-rule[0]",
            "shadow denied in dry-run mode, no engine, allowed by default",
        ),
        fix="Turn the proxy's rbac logger to debug, send requests, and read the istio-proxy log for the "
        "enforced allowed or denied line that names the matching policy.",
        commands=('istioctl proxy-config log deploy/NAME --level "rbac:debug"', "kubectl logs POD -c istio-proxy"),
    ),
    Entry(
        section="mutual-tls-errors",
        title="Mutual TLS fails between workloads",
        page=SECURITY,
        symptoms=(
            "mtls handshake errors between sidecars, connection reset or 503 after enabling STRICT",
            "PeerAuthentication strict mode breaks calls from some clients",
            "client sidecar sends plaintext instead of mutual tls",
            "is traffic between my services encrypted with mtls",
        ),
        fix="Check istiod is healthy and the proxies have certificates, then the PeerAuthentication and "
        "DestinationRules that apply; the Grafana workload dashboard shows whether requests use mTLS.",
        commands=("istioctl x describe pod POD", "kubectl get peerauthentications,destinationrules -A"),
    ),
    Entry(
        section="envoyfilter-migration",
        title="Replace EnvoyFilters before upgrading",
        page=UPGRADE,
        symptoms=(
            "envoyfilter breaks on istio upgrade, what first-class api replaces it",
            "migrate away from envoy filters during an upgrade",
        ),
        fix="Replace each EnvoyFilter with the API now made for its job (Telemetry, WasmPlugin, gatewayTopology, "
        "proxy annotations) before upgrading.",
        commands=("kubectl get envoyfilters -A",),
    ),
    Entry(
        section="use-telemetry-api-for-metrics-customization",
        title="Customise metrics with the Telemetry API",
        page=UPGRADE,
        parent="envoyfilter-migration",
        symptoms=(
            "IstioOperator telemetry v2 prometheus configOverride no longer works",
            "add a tag or dimension to istio_requests_total",
            "Telemetry resource tagOverrides ignored together with an EnvoyFilter",
        ),
        fix="Move metric customisation from IstioOperator's configOverride to a Telemetry resource "
        "(metrics overrides with tagOverrides); the two do not mix.",
        commands=("kubectl get telemetries -A",),
    ),
    Entry(
        section="use-the-wasmplugin-api-for-wasm-data-plane-extensibility",
        title="Load Wasm with the WasmPlugin API",
        page=UPGRADE,
        parent="envoyfilter-migration",
        symptoms=(
            "wasm filter injected with an EnvoyFilter stops loading",
            "deploy a wasm module from an oci registry",
        ),
        fix="Declare Wasm extensions as WasmPlugin resources, which fetch the module from a registry, URL or "
        "file, instead of EnvoyFilter patches.",
        commands=("kubectl get wasmplugins -A",),
    ),
    Entry(
        section="use-gateway-topology-to-set-the-number-of-the-trusted-hops",
        title="Trusted proxy hops through gatewayTopology",
        page=UPGRADE,
        parent="envoyfilter-migration",
        symptoms=(
            "x-forwarded-for client ip wrong behind a load balancer",
            "xff_num_trusted_hops set with an EnvoyFilter on the ingress gateway",
            "numTrustedProxies for the ingress gateway",
        ),
        fix="Set numTrustedProxies in the gateway's gatewayTopology (proxy.istio.io/config annotation or mesh "
        "default) instead of patching the connection manager.",
        commands=("""kubectl annotate pod POD 'proxy.istio.io/config={"gatewayTopology":{"numTrustedProxies":1}}'""",),
    ),
    Entry(
        section="use-gateway-topology-to-enable-proxy-protocol-on-the-ingress-gateways",
        title="PROXY protocol through gatewayTopology",
        page=UPGRADE,
        parent="envoyfilter-migration",
        symptoms=(
            "enable proxy protocol from an aws nlb or haproxy on the ingress gateway",
            "listener filter proxy_protocol added with an EnvoyFilter",
            "client source ip lost at the ingress gateway",
        ),
        fix="Turn PROXY protocol on with proxyProtocol in the gateway's gatewayTopology rather than an "
        "EnvoyFilter listener patch.",
        commands=("""kubectl annotate pod POD 'proxy.istio.io/config={"gatewayTopology":{"proxyProtocol":{}}}'""",),
    ),
    Entry(
        section="use-a-proxy-annotation-to-customize-the-histogram-bucket-sizes",
        title="Histogram buckets through a proxy annotation",
        page=UPGRADE,
        parent="envoyfilter-migration",
        symptoms=(
            "change the bucket boundaries of istio_request_duration_milliseconds",
            "histogram_bucket_settings in a bootstrap EnvoyFilter",
        ),
        fix="Set the sidecar.istio.io/statsHistogramBuckets annotation on the pod instead of a bootstrap patch.",
        commands=("kubectl annotate pod POD "
                  """'sidecar.istio.io/statsHistogramBuckets={"istiocustom":[1,5,50,500]}'""",),
    ),
    Entry(
        section="seemingly-valid-configuration-is-rejected",
        title="Configuration that looks right is rejected",
        page=VALIDATION,
        symptoms=(
            "istioctl analyze: IST0106 SchemaValidationError",
            "galley_validation_failed rising on istiod",
            "admission webhook validation.istio.io denied the request for yaml that looks correct",
            "kubectl apply of an istio resource fails validation, indentation or list dash mistake",
            "istioctl validate or analyze to see why configuration is rejected",
            "the api server refuses an istio resource and you need the exact reason",
            "istioctl validate accepts a file that kubectl apply still refuses",
        ),
        fix="Run istioctl validate -f and istioctl analyze (with an istioctl close to the control plane's "
        "version), and check indentation and list dashes against the API reference.",
        commands=("istioctl validate -f FILE.yaml", "istioctl analyze -n NAMESPACE"),
    ),
    Entry(
        section="creating-configuration-fails-with-x509-certificate-errors",
        title="Validation webhook calls fail on an untrusted certificate",
        page=VALIDATION,
        symptoms=(
            "kubectl apply of a virtual service fails with x509: certificate signed by unknown authority",
            'error when creating "FILE.yaml": Internal error occurred: failed calling webhook "validation.istio.io": '
            'Post "https://istiod.istio-system.svc:443/validate": x509: certificate signed by unknown authority',
            "validating webhook caBundle empty, istiod cannot patch it",
            "istiod lacks rbac to update validatingwebhookconfigurations",
        ),
        fix="Check the validating webhook's caBundle is set, that istiod runs and logs no patch errors, and "
        "that its ClusterRole may write validatingwebhookconfigurations.",
        commands=("kubectl get validatingwebhookconfiguration -o yaml | grep caBundle",
                  "kubectl get clusterrole istiod-istio-system -o yaml"),
    ),
    Entry(
        section="creating-configuration-fails-with-no-such-hosts-or-no-endpoints-available-errors",
        title="Applying configuration fails while istiod is unreachable",
        page=VALIDATION,
        symptoms=(
            "kubectl apply of istio config fails: no endpoints available for service istiod",
            'Error from server (InternalError): error when creating "FILE.yaml": Internal error occurred: failed '
            'calling webhook "validation.istio.io": Post "https://istiod.istio-system.svc:443/validate": '
            "dial tcp: connect: connection refused",
            "validation webhook dial tcp: lookup istiod.istio-system.svc: no such host",
            "cannot create or update virtual services while istiod is down",
        ),
        fix="Validation fails closed, so get istiod's pods running and its endpoints ready, then apply again.",
        commands=("kubectl -n istio-system get pod -l app=istiod", "kubectl -n istio-system get endpoints istiod"),
    ),
)
ENTRIES = ENTRIES + MODERN_ENTRIES + GUIDE_ENTRIES
