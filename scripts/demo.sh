#!/usr/bin/env bash
# The main job: installs ZooKeeper (and nginx, for the comparison) from
# Debian's packages when missing, builds
# zkgate and runs `zkgate demo` with any arguments given (see zkgate demo -h).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh zookeeper nginx
mkdir -p bin
go build -o bin/zkgate ./cmd/zkgate
exec bin/zkgate demo "$@"
