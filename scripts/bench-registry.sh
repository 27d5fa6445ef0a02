#!/usr/bin/env bash
# The large-registry benchmark: installs ZooKeeper (Debian package) when
# missing, builds zkgate and runs
#   zkgate bench registry "$@"
# which writes 100,000 Curator registrations in 10,000 services into a
# standalone ZooKeeper, starts zkgate gateway on it as a separate process and
# measures cold start, memory and single changes; prints the table and writes
# bench-results/registry-<date>.json (see docs/benchmarks.md).
# Example: scripts/bench-registry.sh --profile bench-results/registry-profiles
set -euo pipefail
exec "$(dirname "$0")/bench-run.sh" registry "zookeeper" "$@"
