#!/usr/bin/env bash
# The proxy benchmark: installs nginx-light, wrk and ZooKeeper (Debian
# packages) when missing, builds zkgate and runs
#   zkgate bench proxy "$@"
# which loads one backend directly, through the gateway, through nginx and
# through a bare httputil.ReverseProxy with wrk, prints the table and writes
# bench-results/proxy-<date>.json (see docs/benchmarks.md).
# Example: scripts/bench-proxy.sh --rounds 3 --cpuprofile bench-results/gateway.pprof
set -euo pipefail
exec "$(dirname "$0")/bench-run.sh" proxy "nginx wrk zookeeper" "$@"
