#!/usr/bin/env bash
# Local Apache Kafka broker (KRaft, combined broker+controller) from Maven Central jars.
#
#   infra/kafka/kafka.sh jars            resolve the jars into the cache (offline on re-runs)
#   infra/kafka/kafka.sh start           format storage if new, start, wait until it answers
#   infra/kafka/kafka.sh stop            stop it cleanly (SIGTERM, then wait)
#   infra/kafka/kafka.sh status          exit 0 if it answers a metadata request
#
# Environment: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (KAFKA_PORT+1), KAFKA_SASL_PORT
# (empty: no SASL listener; set: a SASL_PLAINTEXT/SCRAM-SHA-512 listener and the
# StandardAuthorizer, PLAINTEXT clients stay super users), KAFKA_DATA_DIR
# (.registry-data/kafka), KAFKA_HEAP (512m),
# KAFKA_JARS_CACHE (~/.cache/credit-registry/kafka-<version>), KAFKA_START_TIMEOUT (90).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")"
port="${KAFKA_PORT:-9092}"
cport="${KAFKA_CONTROLLER_PORT:-$((port + 1))}"
sasl_port="${KAFKA_SASL_PORT:-}"
data="${KAFKA_DATA_DIR:-$repo/.registry-data/kafka}"
heap="${KAFKA_HEAP:-512m}"
cache="${KAFKA_JARS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/credit-registry/kafka-$version}"
timeout="${KAFKA_START_TIMEOUT:-90}"
pidfile="$data/broker.pid"
log="$data/broker.log"

say() { printf 'kafka: %s\n' "$*" >&2; }

resolve_jars() {
  if [ -f "$cache/.complete" ]; then return 0; fi
  say "resolving Apache Kafka $version jars with Maven into $cache"
  mkdir -p "$cache"
  local offline=()
  # A second resolution reuses the local Maven repository without the network.
  if [ -d "$HOME/.m2/repository/org/apache/kafka/kafka_2.13/$version" ]; then offline=(-o); fi
  mvn -q -B -Dstyle.color=never "${offline[@]}" -f "$here/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$cache" >&2 \
    || mvn -q -B -Dstyle.color=never -f "$here/pom.xml" dependency:copy-dependencies \
         -DincludeScope=runtime -DoutputDirectory="$cache" >&2
  # slf4j 1.x may arrive through kafka's own pom; the log4j2 binding needs 2.x alone.
  rm -f "$cache"/slf4j-api-1.*.jar
  touch "$cache/.complete"
}

write_config() {
  mkdir -p "$data/logs"
  local listeners="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport"
  local advertised="PLAINTEXT://127.0.0.1:$port"
  local protomap="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  if [ -n "$sasl_port" ]; then
    listeners="$listeners,SASL_PLAINTEXT://127.0.0.1:$sasl_port"
    advertised="$advertised,SASL_PLAINTEXT://127.0.0.1:$sasl_port"
    protomap="$protomap,SASL_PLAINTEXT:SASL_PLAINTEXT"
  fi
  cat > "$data/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=$protomap
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$data/logs
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
message.max.bytes=2097152
log.retention.hours=720
log.segment.bytes=268435456
sasl.enabled.mechanisms=SCRAM-SHA-512
PROPS
  if [ -n "$sasl_port" ]; then
    # Only the SASL listener is subject to ACLs: PLAINTEXT and CONTROLLER clients (the broker
    # itself, the tests, the local stack) are User:ANONYMOUS, a super user. Lenders get SCRAM
    # users and ACLs at runtime (registry lender add); nothing is allowed without an ACL.
    cat >> "$data/server.properties" <<PROPS
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:ANONYMOUS;User:registry-admin
listener.name.sasl_plaintext.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
PROPS
  fi
  if [ -n "${KAFKA_EXTRA_PROPERTIES:-}" ]; then printf '%s\n' "$KAFKA_EXTRA_PROPERTIES" >> "$data/server.properties"; fi
}

classpath() { printf '%s/*' "$cache"; }

running_pid() {
  [ -f "$pidfile" ] || return 1
  local pid; pid="$(cat "$pidfile")"
  kill -0 "$pid" 2>/dev/null && printf '%s' "$pid"
}

answers() {
  # A metadata request through the broker's own admin tooling would need a JVM start (~2 s);
  # a Python aiokafka metadata call is faster when the project venv exists, else use the JVM.
  local py="$repo/.venv/bin/python"
  if [ -x "$py" ]; then
    "$py" - "$port" <<'PY' 2>/dev/null
import asyncio, sys
from aiokafka.admin import AIOKafkaAdminClient
async def main() -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=f"127.0.0.1:{sys.argv[1]}", request_timeout_ms=3000)
    await admin.start()
    try:
        await admin.describe_cluster()
    finally:
        await admin.close()
asyncio.run(asyncio.wait_for(main(), 8))
PY
  else
    java -cp "$(classpath)" org.apache.kafka.tools.BrokerApiVersionsCommand \
      --bootstrap-server "127.0.0.1:$port" >/dev/null 2>&1
  fi
}

start() {
  resolve_jars
  if pid="$(running_pid)"; then say "already running (pid $pid) on 127.0.0.1:$port"; return 0; fi
  write_config
  if [ ! -f "$data/logs/meta.properties" ]; then
    say "formatting KRaft storage in $data/logs"
    local cluster; cluster="$(java -cp "$(classpath)" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
    java -cp "$(classpath)" kafka.tools.StorageTool format -t "$cluster" \
      -c "$data/server.properties" --ignore-formatted >/dev/null
  fi
  say "starting broker on 127.0.0.1:$port (controller $cport${sasl_port:+, SASL $sasl_port})"
  # setsid: the broker gets its own session, so a Ctrl-C meant for the caller reaches it only
  # through our stop(), which waits for a clean shutdown.
  setsid java -Xmx"$heap" -Xms128m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Dlog4j2.configurationFile="$here/log4j2.yaml" ${KAFKA_OPTS:-} \
    -cp "$(classpath)" kafka.Kafka "$data/server.properties" >"$log" 2>&1 < /dev/null &
  echo $! > "$pidfile"
  local deadline=$((SECONDS + timeout))
  until answers; do
    if ! running_pid >/dev/null; then say "broker exited; last lines of $log:"; tail -n 30 "$log" >&2; return 1; fi
    if [ "$SECONDS" -ge "$deadline" ]; then say "no answer within ${timeout}s; see $log"; return 1; fi
    sleep 0.5
  done
  say "ready on 127.0.0.1:$port"
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then rm -f "$pidfile"; return 0; fi
  say "stopping broker (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then say "forcing stop"; kill -KILL "$pid" 2>/dev/null || true; break; fi
    sleep 0.2
  done
  rm -f "$pidfile"
}

case "${1:-}" in
  jars) resolve_jars; say "jars in $cache" ;;
  start) start ;;
  stop) stop ;;
  status) answers ;;
  classpath) resolve_jars; classpath; echo ;;
  *) echo "usage: $0 jars|start|stop|status|classpath" >&2; exit 2 ;;
esac
