#!/usr/bin/env bash
# promtool (from Debian's `prometheus` package) for the metrics, rule and config checks of
# tests/unit/infra/test_prometheus_rules.py and tests/integration/test_metrics_scrape.py.
#
#   infra/prometheus/promtool.sh install   apt-get install prometheus when promtool is missing (needs root)
#   infra/prometheus/promtool.sh path      print promtool's path; exit 1 if there is none
set -euo pipefail

say() { printf 'promtool: %s\n' "$*" >&2; }

install() {
  if command -v promtool >/dev/null 2>&1; then return 0; fi
  if [ "$(id -u)" != 0 ]; then
    say "promtool is missing and this is not root: install Debian's prometheus (apt-get install prometheus)"
    say "the Prometheus rule and metrics tests fail without it"
    return 0
  fi
  say "installing Debian's prometheus (for promtool)"
  apt-get update -qq >&2
  # The package's service is not started here (no init system in CI); only promtool is used.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >&2
}

case "${1:-}" in
  install) install ;;
  path) command -v promtool ;;
  *) echo "usage: $0 install|path" >&2; exit 2 ;;
esac
