#!/usr/bin/env bash
# Runs one benchmark the way scripts/bench-proxy.sh, bench-propagation.sh
# and bench-registry.sh do: installs the Debian packages it needs when
# missing, builds zkgate into a temporary directory and runs
#   zkgate bench BENCHMARK ARGS...
# Usage: scripts/bench-run.sh BENCHMARK "PACKAGE ..." ARGS...
set -euo pipefail
bench=$1 deps=$2
shift 2
cd "$(dirname "$0")/.."
# shellcheck disable=SC2086 # the packages are words
scripts/install-deps.sh $deps
bin_dir=$(mktemp -d)
trap 'rm -rf "$bin_dir"' EXIT
go build -o "$bin_dir/zkgate" ./cmd/zkgate
"$bin_dir/zkgate" bench "$bench" "$@"
