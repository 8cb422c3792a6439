"""DestinationRules: hosts that resolve, subsets that select pods, TLS origination that verifies the server."""

from __future__ import annotations

from checks.analyzers import Finding, Snapshot, analyzer
from checks.analyzers.snapshot import (
    DESTINATION_RULES,
    NODES_T,
    PODS,
    SERVICE_ENTRIES,
    SERVICES_T,
    Hosts,
    labels_of,
    name,
    namespace_of,
    selector_text,
    service_of_host,
    spec,
)

# Labels istiod adds to every endpoint from its node (pilot's label.AugmentLabels), which subsets may select.
REGION, ZONE, SUBZONE, HOSTNAME = ("topology.kubernetes.io/region", "topology.kubernetes.io/zone",
                                   "topology.istio.io/subzone", "kubernetes.io/hostname")
TOPOLOGY = frozenset({REGION, ZONE, SUBZONE, HOSTNAME})


def dr_finding(dr: dict, code: str, values: dict, fix: str, refs=(), evidence=()) -> Finding:
    return Finding("DestinationRule", namespace_of(dr), name(dr), code, values, fix, tuple(refs), tuple(evidence))


def _topology(pod: dict, nodes) -> dict:
    node_name = spec(pod).get("nodeName") or ""
    node = nodes.get("", node_name) if node_name else None
    extra = {}
    if node is not None:
        node_labels = labels_of(node)
        for key in (REGION, ZONE, SUBZONE):
            if node_labels.get(key):
                extra[key] = node_labels[key]
    if node_name:
        extra[HOSTNAME] = node_name
    return extra


@analyzer(id="config.dr-subset-pods", title="DestinationRule hosts exist and their subsets select pods",
          section="503-errors-after-setting-destination-rule", codes=("IST0173", "IST0174"),
          needs=lambda istio: (DESTINATION_RULES, PODS, SERVICES_T), reads=lambda istio: (SERVICE_ENTRIES, NODES_T),
          signatures=("IST0173", "IST0174", "DestinationRuleSubsetNotSelectPods", "UnknownDestinationRuleHost", "UH",
                      "no healthy upstream", "subsets"))
def dr_subset_pods(snap: Snapshot):
    """A DestinationRule's host must resolve to a Service or ServiceEntry visible from its namespace, and each of
    its subsets must select at least one pod (subset labels merged with the ServiceEntry's workload selector;
    istiod's topology labels from the pod's node count, as istioctl matches them)."""
    hosts = Hosts(snap[SERVICES_T], snap[SERVICE_ENTRIES])
    pods, nodes = snap[PODS], snap[NODES_T]
    for dr in snap[DESTINATION_RULES].items:
        ns, host = namespace_of(dr), str(spec(dr).get("host", ""))
        found = hosts.find(host, ns, spec(dr).get("exportTo"))
        if found is None:
            target = service_of_host(host, ns)
            yield dr_finding(dr, "IST0174", {"host": host, "namespace": ns},
                             f"kubectl get svc -A | grep {host.split('.')[0]}; kubectl get serviceentry -A\n"
                             f"kubectl -n {ns} edit destinationrule {name(dr)}   # spec.host: the FQDN of an existing "
                             "Service (name.namespace.svc.cluster.local), or add a ServiceEntry for it",
                             refs=(f"Service {target[0]}/{target[1]}",) if target else ())
            continue
        for i, subset in enumerate(spec(dr).get("subsets") or []):
            # a subset's pods are pods of its host: a Service's own (in its namespace; istioctl looks at every
            # pod of the cluster, so a v2 pod of another app would hide a ratings v2 with no pod), or those of a
            # ServiceEntry's workload selector
            wanted = {**found["selector"], **(subset.get("labels") or {})}
            plain = {k: v for k, v in wanted.items() if k not in TOPOLOGY}
            topo = {k: v for k, v in wanted.items() if k in TOPOLOGY}
            scope = found["namespace"] if "service" in found and found["selector"] else None
            candidates = pods.matching(plain, scope)
            if any(all(_topology(p, nodes).get(k) == str(v) for k, v in topo.items()) for p in candidates):
                continue
            backing = [p for p in pods.matching(found["selector"], found["namespace"])] if found["selector"] else []
            versions = sorted({labels_of(p).get("version") for p in backing} - {None})
            yield dr_finding(dr, "IST0173", {"index": i, "subset": subset.get("name"),
                                             "labels": selector_text(wanted) or "no labels", "host": host},
                             f"kubectl get pods -n {found['namespace']} -l "
                             f"{selector_text(found['selector']) or 'app=…'}"
                             " --show-labels\n"
                             f"kubectl -n {ns} edit destinationrule {name(dr)}   # spec.subsets[{i}].labels: labels "
                             "the pods carry" + (f" (version: {', '.join(versions)})" if versions else "")
                             + ", or deploy the workload the subset names",
                             refs=(found["ref"],),
                             evidence=(f"{found['ref']} has {len(backing)} pod(s)"
                                       + (f", versions {', '.join(versions)}" if versions else ""),))


ORIGINATING = ("SIMPLE", "MUTUAL")


@analyzer(id="config.dr-ca-certificates", title="TLS origination verifies the server's certificate",
          section="tls-configuration-mistakes", codes=("IST0128", "IST0129"), needs=lambda istio: (DESTINATION_RULES,),
          signatures=("IST0128", "IST0129", "caCertificates", "tls.mode SIMPLE", "tls.mode MUTUAL",
                      "NoServerCertificateVerification"))
def dr_ca_certificates(snap: Snapshot):
    """A DestinationRule that originates TLS (mode SIMPLE or MUTUAL, for the whole host or per port) without
    caCertificates does not verify the server it talks to (unless a credentialName serves a workload selector)."""
    for dr in snap[DESTINATION_RULES].items:
        policy = spec(dr).get("trafficPolicy") or {}
        host, selector = spec(dr).get("host", ""), spec(dr).get("workloadSelector")
        settings = [(None, policy.get("tls") or {})] + [((p.get("port") or {}).get("number"), p.get("tls") or {})
                                                         for p in policy.get("portLevelSettings") or []]
        for port, tls in settings:
            mode = tls.get("mode")
            if mode not in ORIGINATING or tls.get("caCertificates") or (tls.get("credentialName") and selector):
                continue
            where = ("spec.trafficPolicy.tls" if port is None
                     else f"spec.trafficPolicy.portLevelSettings[port {port}].tls")
            yield dr_finding(dr, "IST0128" if port is None else "IST0129",
                             {"mode": mode, "host": host, "port": port},
                             f"kubectl -n {namespace_of(dr)} edit destinationrule {name(dr)}\n"
                             f"# {where}: add caCertificates: /etc/certs/ca.pem (the CA that signed {host}'s "
                             "certificate), or credentialName with a ca.crt key",
                             evidence=(f"{where}.mode: {mode}, no caCertificates",))
