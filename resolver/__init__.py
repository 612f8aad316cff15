"""resolver: the DNS data plane of hotline-edge.

Answers customers' queries, enforces the RPZ policy (rpz) before and after asking the upstream
resolvers, swaps policies without dropping a query, and reports every policy hit.

    wire        the one module that slices DNS messages (parse, walk, build)
    pipeline    the named stages: acl, parse, policy, cache/forward, policy, synthesize, hit hook
    synth       RPZ actions -> response pieces;  cache: upstream truth;  upstream: asking it
    server      UDP and TCP adapters;  service: one data-plane process
    supervisor  workers, reloads, control socket, systemd, metrics;  workers: the process links
    config      [node], [resolver], [[policy.zone]];  hits: the blocked-lookup hook (HitRecord, HitSink)
    cli         hotline-edge serve | checkconf | reload | demo

Importing this package imports nothing heavy; the CLI imports what each command needs.
"""
