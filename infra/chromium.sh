#!/usr/bin/env bash
# Headless Chromium for the dashboard browser test (tests/integration/test_dashboard_browser.py).
#
#   infra/chromium.sh install   apt-get install Debian's chromium when missing (needs root)
#   infra/chromium.sh path      print the browser's path; exit 1 if there is none
set -euo pipefail

say() { printf 'chromium: %s\n' "$*" >&2; }

find_browser() {
  local name
  for name in "${CHROMIUM:-}" chromium chromium-browser; do
    [ -n "$name" ] && command -v "$name" 2>/dev/null && return 0
  done
  return 1
}

install() {
  if find_browser >/dev/null; then return 0; fi
  if [ "$(id -u)" != 0 ]; then
    say "chromium is missing and this is not root: install Debian's chromium (apt-get install chromium)"
    say "the dashboard browser test fails without it"
    return 0
  fi
  say "installing Debian's chromium"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2
}

case "${1:-}" in
  install) install ;;
  path) find_browser ;;
  *) echo "usage: $0 install|path" >&2; exit 2 ;;
esac
