"""feedsync: signed takedown feeds -> verified, screened, activated, audited, receipted.

    bundle      the ONE owner of the takedown entry format and its compilation to RPZ
    engine      the pure decisions of a cycle (apply / hold / no change / refuse)
    config      the [[feed]] sections (rpz.tomlconf, line-precise errors)
    xfr         RPZ over AXFR/IXFR with TSIG and ZONEMD (dnspython); xfrindex keeps it per owner
    tufsource   the signed bundle over HTTP(S) (python-tuf ngclient); publish is the hotline's side
    sync        one cycle of one feed; daemon runs cycles on timers and NOTIFY
    store       versions on disk, atomic activation; statedb the SQLite schema (state, audit, holds,
                receipts); receipts the node's Ed25519 receipts; control the resolver's control socket
    cli         `hotline-edge feed ...`

docs/feeds.md is the operator's and the hotline's manual.
"""
