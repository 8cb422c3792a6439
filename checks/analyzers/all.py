"""Every configuration analyzer, in the order of the guide sections they explain."""

from checks.analyzers import conditions, destinationrule, envoyfilter, gateway, injection, policy, schema, service
from checks.analyzers import virtualservice as vs

ANALYZERS = (
    injection.injection,
    injection.proxy_image,
    injection.injection_webhooks,
    vs.vs_destinations,
    vs.vs_mesh_hosts,
    vs.vs_destination_subsets,
    destinationrule.dr_subset_pods,
    vs.vs_gateways,
    gateway.gateway_workloads,
    gateway.gateway_conflicts,
    service.service_port_names,
    destinationrule.dr_ca_certificates,
    gateway.gateway_certificates,
    envoyfilter.envoy_filters,
    policy.sidecar_selectors,
    policy.authz_targets,
    policy.ambient_policies,
    conditions.status_conditions,
    schema.schema,
)
