#!/usr/bin/env bash
# Installs what zkgate's tests, demo and benchmarks need from Debian's
# packages, only when missing. Usage: scripts/install-deps.sh [zookeeper] [nginx] [wrk] [chromium]
# (no argument: zookeeper only).
set -euo pipefail

want=("$@")
[ ${#want[@]} -eq 0 ] && want=(zookeeper)

pkgs=()
for w in "${want[@]}"; do
  case "$w" in
    zookeeper) [ -f /usr/share/java/zookeeper.jar ] && command -v java >/dev/null || pkgs+=(zookeeper default-jre-headless) ;;
    nginx)     command -v nginx >/dev/null || pkgs+=(nginx-light) ;;
    wrk)       command -v wrk >/dev/null || pkgs+=(wrk) ;;
    chromium)  command -v chromium >/dev/null || pkgs+=(chromium) ;;
    *) echo "install-deps: unknown component $w" >&2; exit 2 ;;
  esac
done
[ ${#pkgs[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "install-deps: installing ${pkgs[*]} (Debian packages)" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
