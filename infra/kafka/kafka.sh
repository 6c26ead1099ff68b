#!/usr/bin/env bash
# Local Apache Kafka broker (KRaft, combined broker+controller) from Maven Central jars.
#
#   infra/kafka/kafka.sh jars            resolve the jars into the cache (offline on re-runs)
#   infra/kafka/kafka.sh start           format storage if new, start, wait until it answers
#   infra/kafka/kafka.sh stop            stop it cleanly (SIGTERM, then wait)
#   infra/kafka/kafka.sh status          exit 0 if it answers a metadata request
#   infra/kafka/kafka.sh kill            SIGKILL it (a crash, for fault tests)
#   infra/kafka/kafka.sh client-cert NAME [DIR]
#                                        issue a client certificate CN=NAME signed by the local
#                                        CA (mutual TLS): DIR/NAME.pem + DIR/NAME.key
#
# Environment: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (KAFKA_PORT+1), KAFKA_SASL_PORT
# (empty: no SASL listener; set: a SASL_PLAINTEXT/SCRAM-SHA-512 listener), KAFKA_SSL_PORT
# (set: an SSL listener that requires a client certificate, principal = its CN),
# KAFKA_SASL_SSL_PORT (set: a SASL_SSL/SCRAM-SHA-512 listener). Any of the three turns on the
# StandardAuthorizer (PLAINTEXT clients stay super users). TLS listeners use certificates made
# at the first start in $KAFKA_DATA_DIR/tls (a local CA, ca.pem; a broker certificate for
# 127.0.0.1 and localhost) with openssl, PEM keystores, nothing committed. KAFKA_DATA_DIR
# (.registry-data/kafka), KAFKA_HEAP (512m),
# KAFKA_JARS_CACHE (~/.cache/credit-registry/kafka-<version>), KAFKA_START_TIMEOUT (90).
# One node of a cluster (infra/kafka/cluster.sh sets these): KAFKA_NODE_ID (1),
# KAFKA_QUORUM_VOTERS (1@127.0.0.1:<controller port>), KAFKA_CLUSTER_ID (random at format),
# KAFKA_INTERNAL_REPLICATION (1: replicas of the offsets/transaction topics and of auto-created
# topics; their min ISR is 2 when it is 3), KAFKA_START_WAIT (1; 0: start returns once the JVM
# is launched, as a lone node of a three-voter quorum cannot answer before the others run).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")"
port="${KAFKA_PORT:-9092}"
cport="${KAFKA_CONTROLLER_PORT:-$((port + 1))}"
sasl_port="${KAFKA_SASL_PORT:-}"
ssl_port="${KAFKA_SSL_PORT:-}"
sasl_ssl_port="${KAFKA_SASL_SSL_PORT:-}"
data="${KAFKA_DATA_DIR:-$repo/.registry-data/kafka}"
heap="${KAFKA_HEAP:-512m}"
cache="${KAFKA_JARS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/credit-registry/kafka-$version}"
timeout="${KAFKA_START_TIMEOUT:-90}"
tls="$data/tls"
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

# A local CA and a broker certificate (SAN 127.0.0.1, localhost), made once per data folder and
# kept across restarts so clients' trust stays valid. Keys are PKCS#8 PEM, unencrypted, mode 600.
make_tls() {
  [ -f "$tls/broker.pem" ] && return 0
  command -v openssl >/dev/null || { say "openssl is needed for the TLS listeners"; return 1; }
  say "generating a local CA and broker certificate in $tls"
  mkdir -p "$tls"; chmod 700 "$tls"
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 825 -subj "/CN=credit-registry local CA" \
    -keyout "$tls/ca.key" -out "$tls/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
  issue_cert broker "$tls" "subjectAltName=IP:127.0.0.1,DNS:localhost" "extendedKeyUsage=serverAuth,clientAuth"
  # Kafka's PEM keystore: the private key followed by the certificate chain, one file.
  cat "$tls/broker.key" "$tls/broker.pem" > "$tls/broker-keystore.pem"
  chmod 600 "$tls"/*.key "$tls/broker-keystore.pem"
}

# issue_cert NAME DIR [EXT...]: DIR/NAME.key + DIR/NAME.pem (CN=NAME) signed by the local CA.
issue_cert() {
  local name="$1" dir="$2"; shift 2
  local ext; ext="$(mktemp)"
  printf 'basicConstraints=CA:FALSE\n' > "$ext"
  if [ "$#" -gt 0 ]; then printf '%s\n' "$@" >> "$ext"; else printf 'extendedKeyUsage=clientAuth\n' >> "$ext"; fi
  mkdir -p "$dir"
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/$name.key" 2>/dev/null
  chmod 600 "$dir/$name.key"
  openssl req -new -key "$dir/$name.key" -subj "/CN=$name" -out "$dir/$name.csr" 2>/dev/null
  openssl x509 -req -sha256 -days 825 -in "$dir/$name.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" \
    -set_serial "0x$(openssl rand -hex 12)" -extfile "$ext" -out "$dir/$name.pem" 2>/dev/null
  rm -f "$dir/$name.csr" "$ext"
}

client_cert() {
  local name="${1:?usage: kafka.sh client-cert NAME [DIR]}" dir="${2:-$tls/clients}"
  [ -f "$tls/ca.key" ] || { say "no local CA in $tls (start the broker with a TLS port first)"; return 1; }
  issue_cert "$name" "$dir"
  say "client certificate $dir/$name.pem, key $dir/$name.key"
}

write_config() {
  mkdir -p "$data/logs"
  local rf="${KAFKA_INTERNAL_REPLICATION:-1}" min_isr=1
  if [ "$rf" -ge 3 ]; then min_isr=2; fi
  local listeners="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport"
  local advertised="PLAINTEXT://127.0.0.1:$port"
  local protomap="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  if [ -n "$sasl_port" ]; then
    listeners="$listeners,SASL_PLAINTEXT://127.0.0.1:$sasl_port"
    advertised="$advertised,SASL_PLAINTEXT://127.0.0.1:$sasl_port"
    protomap="$protomap,SASL_PLAINTEXT:SASL_PLAINTEXT"
  fi
  if [ -n "$ssl_port" ]; then
    listeners="$listeners,SSL://127.0.0.1:$ssl_port"
    advertised="$advertised,SSL://127.0.0.1:$ssl_port"
    protomap="$protomap,SSL:SSL"
  fi
  if [ -n "$sasl_ssl_port" ]; then
    listeners="$listeners,SASL_SSL://127.0.0.1:$sasl_ssl_port"
    advertised="$advertised,SASL_SSL://127.0.0.1:$sasl_ssl_port"
    protomap="$protomap,SASL_SSL:SASL_SSL"
  fi
  cat > "$data/server.properties" <<PROPS
process.roles=broker,controller
node.id=${KAFKA_NODE_ID:-1}
controller.quorum.voters=${KAFKA_QUORUM_VOTERS:-1@127.0.0.1:$cport}
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=$protomap
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$data/logs
num.partitions=1
default.replication.factor=$rf
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$min_isr
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
message.max.bytes=2097152
log.retention.hours=720
log.segment.bytes=268435456
sasl.enabled.mechanisms=SCRAM-SHA-512
PROPS
  if [ -n "$sasl_port$ssl_port$sasl_ssl_port" ]; then
    # Only the SASL and TLS listeners are subject to ACLs: PLAINTEXT and CONTROLLER clients
    # (the broker itself, the tests, the local stack) are User:ANONYMOUS, a super user. Lenders
    # get SCRAM users and ACLs at runtime (registry lender add); nothing is allowed without an
    # ACL. A TLS client's principal is its certificate's CN (User:<CN>), so a lender's
    # certificate CN=L gets the same ACLs as its SCRAM user L.
    cat >> "$data/server.properties" <<PROPS
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:ANONYMOUS;User:registry-admin
ssl.principal.mapping.rules=RULE:^CN=([^,]+)\$/\$1/,RULE:^CN=([^,]+),.*\$/\$1/,DEFAULT
PROPS
  fi
  if [ -n "$sasl_port" ]; then
    cat >> "$data/server.properties" <<PROPS
listener.name.sasl_plaintext.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
PROPS
  fi
  if [ -n "$ssl_port$sasl_ssl_port" ]; then
    make_tls
    cat >> "$data/server.properties" <<PROPS
ssl.keystore.type=PEM
ssl.keystore.location=$tls/broker-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.pem
ssl.enabled.protocols=TLSv1.3,TLSv1.2
ssl.endpoint.identification.algorithm=https
listener.name.ssl.ssl.client.auth=required
PROPS
  fi
  if [ -n "$sasl_ssl_port" ]; then
    cat >> "$data/server.properties" <<PROPS
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
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

# The Python that checks readiness: KAFKA_PYTHON, else the repository's venv, else python3 if it
# has aiokafka (a worktree has no venv of its own; the tests pass their interpreter).
readiness_python() {
  local py
  for py in "${KAFKA_PYTHON:-}" "$repo/.venv/bin/python" python3; do
    [ -n "$py" ] && "$py" -c 'import aiokafka' 2>/dev/null && { printf '%s' "$py"; return 0; }
  done
  return 1
}

answers() {
  # A metadata request from aiokafka (~0.3 s; the JVM admin tools are not in the jar set).
  local py; py="$(readiness_python)" || { say "no Python with aiokafka: set KAFKA_PYTHON"; return 1; }
  "$py" - "${1:-$port}" <<'PY' 2>/dev/null
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
}

start() {
  resolve_jars
  if pid="$(running_pid)"; then say "already running (pid $pid) on 127.0.0.1:$port"; return 0; fi
  write_config
  if [ ! -f "$data/logs/meta.properties" ]; then
    say "formatting KRaft storage in $data/logs"
    local cluster="${KAFKA_CLUSTER_ID:-}"
    [ -n "$cluster" ] || cluster="$(java -cp "$(classpath)" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
    java -cp "$(classpath)" kafka.tools.StorageTool format -t "$cluster" \
      -c "$data/server.properties" --ignore-formatted >/dev/null
  fi
  say "starting broker on 127.0.0.1:$port (controller $cport${sasl_port:+, SASL $sasl_port}${ssl_port:+, SSL $ssl_port}${sasl_ssl_port:+, SASL_SSL $sasl_ssl_port})"
  # setsid: the broker gets its own session, so a Ctrl-C meant for the caller reaches it only
  # through our stop(), which waits for a clean shutdown.
  setsid java -Xmx"$heap" -Xms128m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Dlog4j2.configurationFile="$here/log4j2.yaml" ${KAFKA_OPTS:-} \
    -cp "$(classpath)" kafka.Kafka "$data/server.properties" >"$log" 2>&1 < /dev/null &
  echo $! > "$pidfile"
  if [ "${KAFKA_START_WAIT:-1}" = 0 ]; then say "launched (pid $!), not waiting"; return 0; fi
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

crash() {
  local pid
  if ! pid="$(running_pid)"; then rm -f "$pidfile"; say "not running"; return 0; fi
  say "SIGKILL broker (pid $pid)"
  kill -KILL "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  rm -f "$pidfile"
}

case "${1:-}" in
  jars) resolve_jars; say "jars in $cache" ;;
  start) start ;;
  stop) stop ;;
  kill) crash ;;
  status) answers ;;
  classpath) resolve_jars; classpath; echo ;;
  client-cert) shift; client_cert "$@" ;;
  *) echo "usage: $0 jars|start|stop|kill|status|classpath|client-cert NAME [DIR]" >&2; exit 2 ;;
esac
