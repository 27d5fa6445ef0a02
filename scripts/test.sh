#!/usr/bin/env bash
# The test command: installs ZooKeeper (and Chromium) when missing, then checks formatting,
# vets and runs every test with the race detector against real ZooKeeper
# servers started by the project's harness (internal/zktest).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh zookeeper chromium   # chromium: the dashboard's browser test
export ZKGATE_REQUIRE_ZK=1   # never skip ZooKeeper tests silently
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt needed on: $unformatted" >&2
  exit 1
fi
go vet ./...
go test -race -count=1 -timeout 12m "$@" ./...
# The gateway's tests once more on the goroutine engine (gateway.engine:
# goroutine); the run above used the default, the epoll event loops.
ZKGATE_TEST_ENGINE=goroutine go test -race -count=1 -timeout 5m "$@" ./internal/gateway/
