#!/usr/bin/env bash
# Local Redis for consent intervals and de-duplication, from Debian's redis-server.
#
#   infra/redis/redis.sh install   apt-get install redis-server when missing (needs root)
#   infra/redis/redis.sh start     start on REDIS_PORT (6379) with data in REDIS_DATA_DIR
#   infra/redis/redis.sh stop      SHUTDOWN (saves, then exits) and wait
#   infra/redis/redis.sh status    exit 0 if it answers PING
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
port="${REDIS_PORT:-6379}"
data="${REDIS_DATA_DIR:-$repo/.registry-data/redis}"
pidfile="$data/redis.pid"

say() { printf 'redis: %s\n' "$*" >&2; }

install() {
  if command -v redis-server >/dev/null 2>&1; then return 0; fi
  if [ "$(id -u)" != 0 ]; then say "redis-server is missing; install Debian's redis-server"; exit 1; fi
  say "installing Debian's redis-server"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2
}

answers() { redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; }

start() {
  install
  if answers; then say "already answering on 127.0.0.1:$port"; return 0; fi
  mkdir -p "$data"
  # appendonly: consent intervals and dedup marks survive a restart of the local stack.
  redis-server --bind 127.0.0.1 --port "$port" --dir "$data" --daemonize yes \
    --pidfile "$pidfile" --logfile "$data/redis.log" --appendonly yes \
    --save "" --protected-mode yes >/dev/null
  local deadline=$((SECONDS + 20))
  until answers; do
    if [ "$SECONDS" -ge "$deadline" ]; then say "no PONG within 20s; see $data/redis.log"; exit 1; fi
    sleep 0.1
  done
  say "ready on 127.0.0.1:$port"
}

stop() {
  answers || return 0
  say "stopping redis on 127.0.0.1:$port"
  redis-cli -h 127.0.0.1 -p "$port" shutdown >/dev/null 2>&1 || true
  local deadline=$((SECONDS + 20))
  while answers; do
    [ "$SECONDS" -ge "$deadline" ] && { say "still answering after 20s"; exit 1; }
    sleep 0.1
  done
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) answers ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
