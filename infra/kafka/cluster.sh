#!/usr/bin/env bash
# A three-node Apache Kafka cluster on 127.0.0.1 for fault tests: three combined
# broker+controller JVMs (KRaft, static quorum of three voters), each a kafka.sh node with its
# own data folder, ports and small heap. Internal topics (consumer offsets, transactions) and
# auto-created topics get three replicas and min ISR 2.
#
#   infra/kafka/cluster.sh start            format if new, start all nodes, wait until the
#                                           cluster answers with three brokers
#   infra/kafka/cluster.sh stop             stop all nodes cleanly
#   infra/kafka/cluster.sh kill-node N      SIGKILL node N (1..3): a crash
#   infra/kafka/cluster.sh stop-node N      stop node N cleanly
#   infra/kafka/cluster.sh start-node N     start node N again, wait until it answers
#   infra/kafka/cluster.sh status           exit 0 if every node answers
#   infra/kafka/cluster.sh bootstrap        print the bootstrap servers
#   infra/kafka/cluster.sh pid N            print node N's JVM pid
#
# Environment: KAFKA_CLUSTER_DIR (.registry-data/kafka-cluster; node N in node-N/),
# KAFKA_CLUSTER_PORTS (19092,19094,19096: client ports of nodes 1..3),
# KAFKA_CLUSTER_CONTROLLER_PORTS (each client port + 1), KAFKA_HEAP (384m per node),
# KAFKA_START_TIMEOUT (120), KAFKA_PYTHON (see kafka.sh), KAFKA_EXTRA_PROPERTIES (every node).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
dir="${KAFKA_CLUSTER_DIR:-$repo/.registry-data/kafka-cluster}"
IFS=, read -r -a ports <<< "${KAFKA_CLUSTER_PORTS:-19092,19094,19096}"
if [ -n "${KAFKA_CLUSTER_CONTROLLER_PORTS:-}" ]; then
  IFS=, read -r -a cports <<< "$KAFKA_CLUSTER_CONTROLLER_PORTS"
else
  cports=("$((ports[0] + 1))" "$((ports[1] + 1))" "$((ports[2] + 1))")
fi
timeout="${KAFKA_START_TIMEOUT:-120}"
[ "${#ports[@]}" = 3 ] && [ "${#cports[@]}" = 3 ] || { echo "cluster: three ports each" >&2; exit 2; }

say() { printf 'cluster: %s\n' "$*" >&2; }

voters() { printf '1@127.0.0.1:%s,2@127.0.0.1:%s,3@127.0.0.1:%s' "${cports[@]}"; }

bootstrap() { printf '127.0.0.1:%s,127.0.0.1:%s,127.0.0.1:%s' "${ports[@]}"; }

# node N CMD: run kafka.sh CMD as node N.
node() {
  local n="$1"; shift
  [[ "$n" =~ ^[123]$ ]] || { say "node must be 1, 2 or 3"; return 2; }
  KAFKA_NODE_ID="$n" KAFKA_PORT="${ports[n - 1]}" KAFKA_CONTROLLER_PORT="${cports[n - 1]}" \
    KAFKA_SASL_PORT="" KAFKA_SSL_PORT="" KAFKA_SASL_SSL_PORT="" \
    KAFKA_DATA_DIR="$dir/node-$n" KAFKA_QUORUM_VOTERS="$(voters)" KAFKA_CLUSTER_ID="$(cluster_id)" \
    KAFKA_INTERNAL_REPLICATION=3 KAFKA_HEAP="${KAFKA_HEAP:-384m}" KAFKA_START_TIMEOUT="$timeout" \
    KAFKA_EXTRA_PROPERTIES="${KAFKA_EXTRA_PROPERTIES:-}
# a crashed node is fenced after 6 s without heartbeats (the default, 9 s, slows fault tests)
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=6000" \
    "$here/kafka.sh" "$@"
}

# The cluster's id, made once and shared by the three nodes' storage.
cluster_id() {
  mkdir -p "$dir"
  if [ ! -s "$dir/cluster.id" ]; then
    java -cp "$("$here/kafka.sh" classpath)" kafka.tools.StorageTool random-uuid 2>/dev/null \
      | tail -n 1 > "$dir/cluster.id"
  fi
  cat "$dir/cluster.id"
}

# Every node answers and the cluster reports three live brokers.
all_answer() {
  local py="" candidate
  for candidate in "${KAFKA_PYTHON:-}" "$repo/.venv/bin/python" python3; do
    if [ -n "$candidate" ] && "$candidate" -c 'import aiokafka' 2>/dev/null; then py="$candidate"; break; fi
  done
  [ -n "$py" ] || { say "no Python with aiokafka: set KAFKA_PYTHON"; return 1; }
  "$py" - "${ports[@]}" <<'PY' 2>/dev/null
import asyncio, sys
from aiokafka.admin import AIOKafkaAdminClient
async def one(port: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}", request_timeout_ms=3000)
    await admin.start()
    try:
        return len((await admin.describe_cluster())["brokers"])
    finally:
        await admin.close()
async def main() -> None:
    counts = [await one(p) for p in sys.argv[1:]]
    sys.exit(0 if counts == [3, 3, 3] else 1)
asyncio.run(asyncio.wait_for(main(), 15))
PY
}

wait_all() {
  local deadline=$((SECONDS + timeout))
  until all_answer; do
    if [ "$SECONDS" -ge "$deadline" ]; then say "cluster not ready within ${timeout}s; see $dir/node-*/broker.log"; return 1; fi
    sleep 0.5
  done
}

start() {
  "$here/kafka.sh" jars
  cluster_id >/dev/null
  local n
  # A lone voter cannot elect a controller, so the nodes are launched first and awaited together.
  for n in 1 2 3; do KAFKA_START_WAIT=0 node "$n" start; done
  wait_all
  say "ready: $(bootstrap)"
}

stop() {
  # All at once: stopped one by one, the last node would wait for a quorum that is gone.
  local n
  for n in 1 2 3; do node "$n" stop & done
  wait
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  kill-node) node "${2:?node}" kill ;;
  stop-node) node "${2:?node}" stop ;;
  start-node) node "${2:?node}" start ;;
  status) all_answer ;;
  bootstrap) bootstrap; echo ;;
  pid) cat "$dir/node-${2:?node}/broker.pid" ;;
  *) echo "usage: $0 start|stop|kill-node N|stop-node N|start-node N|status|bootstrap|pid N" >&2; exit 2 ;;
esac
