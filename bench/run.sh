#!/usr/bin/env bash
# One command per benchmark; results go to BENCHMARKS.md by hand (see bench/README.md).
#   bench/run.sh resolver                  ours vs Unbound, BIND, PowerDNS Recursor on the 1M-rule zone
#   bench/run.sh resolver ours unbound     a subset
#   SIZE=100000 PASSES=1 DUR=10 bench/run.sh resolver     quicker
#   bench/run.sh summarize /tmp/hotline-bench/results-...  the tables of an earlier run
#   bench/run.sh rpz [--sizes 1000000,8000000 --refs pdns,unbound,bind]   policy core: load, memory, decisions/s
#   bench/run.sh feeds [...]               feed sync: IXFR, AXFR, bundle (bench/feeds.py --help)
#   bench/run.sh blocklog [...]            blocked-lookup log: writer alone, cost on the blocked path
#   bench/run.sh unbound-plugin            Unbound + our plugin vs Unbound's native RPZ (1M rules)
#   SIZE=100000 PASSES=1 DUR=5 bench/run.sh unbound-plugin   quicker
#   bench/run.sh unbound-plugin --summarize /tmp/hotline-bench/plugin-...
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
bash "$ROOT/scripts/bootstrap.sh" >&2
PY=${HOTLINE_EDGE_VENV:-$ROOT/.venv}/bin/python
what=${1:-}
shift || true
case "$what" in
  resolver)  exec "$PY" "$ROOT/bench/resolver_bench.py" "$@" ;;
  unbound-plugin) exec "$PY" "$ROOT/bench/unbound_plugin_bench.py" "$@" ;;
  summarize) exec "$PY" "$ROOT/bench/resolver_bench.py" --summarize "$@" ;;
  rpz)       exec "$PY" "$ROOT/bench/rpz_bench.py" "$@" ;;
  feeds)     exec "$PY" "$ROOT/bench/feeds.py" "$@" ;;
  blocklog)  exec "$PY" "$ROOT/bench/blocklog_bench.py" "$@" ;;
  *) echo "usage: bench/run.sh resolver [ours unbound bind pdns] | summarize OUTDIR | rpz | feeds | blocklog | unbound-plugin [plugin native]" >&2
     exit 2 ;;
esac
