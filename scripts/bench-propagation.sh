#!/usr/bin/env bash
# The drain propagation benchmark: installs ZooKeeper (Debian package) when
# missing, builds zkgate and runs
#   zkgate bench propagation "$@"
# which starts a 3-node ZooKeeper ensemble, one controller and 10 gateways,
# runs 200 drain/undrain cycles through the controller API, prints the table
# and writes bench-results/propagation-<date>.json (see docs/benchmarks.md).
# Example: scripts/bench-propagation.sh --gateways 10 --drains 200
set -euo pipefail
exec "$(dirname "$0")/bench-run.sh" propagation "zookeeper" "$@"
