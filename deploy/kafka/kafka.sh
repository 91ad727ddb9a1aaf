#!/usr/bin/env bash
# A local single-node Apache Kafka broker (KRaft) on 127.0.0.1 for the demo and tests.
#   deploy/kafka/kafka.sh start|stop|status|fetch
# State lives in $TOKENFUSE_KAFKA_HOME (default .tokenfuse/kafka in the current directory); the
# broker listens on $TOKENFUSE_KAFKA_PORT (default 9092), its controller on the port after it.
# The jars come from Maven Central through pom.xml and are cached in ~/.m2.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
home=${TOKENFUSE_KAFKA_HOME:-$PWD/.tokenfuse/kafka}
libs=${TOKENFUSE_KAFKA_LIBS:-$home/libs}
data=$home/data
pidfile=$home/kafka.pid
log=$home/server.log
heap=${TOKENFUSE_KAFKA_HEAP:-512m}
timeout=${TOKENFUSE_KAFKA_START_TIMEOUT:-90}
port=${TOKENFUSE_KAFKA_PORT:-9092}

die() { echo "kafka.sh: $*" >&2; exit 1; }

need() {
  command -v java >/dev/null || die "Java 17+ is required for the local broker (install openjdk-17-jre-headless)"
  command -v mvn >/dev/null || [[ -f $libs/.complete ]] || die "Maven is required to fetch the Kafka jars (install maven)"
}

fetch() {
  need
  if [[ -f $libs/.complete && $libs/.complete -nt $here/pom.xml ]]; then return; fi
  echo "kafka.sh: resolving Kafka jars with Maven (cached in ~/.m2)..." >&2
  rm -rf "$libs"; mkdir -p "$libs"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies -DoutputDirectory="$libs" >&2 \
    || die "Maven could not resolve the Kafka jars (see the output above)"
  touch "$libs/.complete"
}

running() { [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

start() {
  if running; then echo "kafka.sh: already running (pid $(cat "$pidfile"))"; return; fi
  fetch
  mkdir -p "$data"
  sed -e "s#@LOG_DIRS@#$data#" -e "s#@CONTROLLER_PORT@#$((port + 1))#g" -e "s#@PORT@#$port#g" \
    "$here/server.properties" > "$home/server.properties"
  cat > "$home/log4j2.yaml" <<YAML
Configuration:
  Appenders:
    Console: {name: STDOUT, PatternLayout: {pattern: "[%d] %p %m (%c)%n"}}
  Loggers:
    Root: {level: INFO, AppenderRef: [{ref: STDOUT}]}
    Logger:
      - {name: kafka, level: WARN}
      - {name: org.apache.kafka, level: WARN}
      - {name: kafka.server.KafkaRaftServer, level: INFO}
      - {name: kafka.server.BrokerServer, level: INFO}
YAML
  if [[ ! -f $data/meta.properties ]]; then
    java -cp "$libs/*" kafka.tools.StorageTool format --standalone --ignore-formatted \
      -t "$(java -cp "$libs/*" kafka.tools.StorageTool random-uuid)" \
      -c "$home/server.properties" >"$home/format.log" 2>&1 || { cat "$home/format.log" >&2; die "storage format failed"; }
  fi
  : > "$log"
  nohup java -Xms"$heap" -Xmx"$heap" -XX:+UseG1GC \
    -Dlog4j2.configurationFile="$home/log4j2.yaml" \
    -cp "$libs/*" kafka.Kafka "$home/server.properties" >>"$log" 2>&1 &
  echo $! > "$pidfile"
  for ((i = 0; i < timeout * 10; i++)); do
    if grep -q "Kafka Server started" "$log"; then
      echo "kafka.sh: broker up on 127.0.0.1:$port (pid $(cat "$pidfile"), log $log)"; return
    fi
    running || { tail -n 30 "$log" >&2; die "broker exited during start-up"; }
    sleep 0.1
  done
  tail -n 30 "$log" >&2; stop; die "broker did not start within ${timeout}s"
}

stop() {
  if ! running; then rm -f "$pidfile"; echo "kafka.sh: not running"; return; fi
  local pid; pid=$(cat "$pidfile")
  kill "$pid"
  for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  rm -f "$pidfile"; echo "kafka.sh: stopped"
}

status() {
  if running; then echo "kafka.sh: running (pid $(cat "$pidfile"))"; else echo "kafka.sh: not running"; return 1; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  fetch) fetch ;;
  *) echo "usage: $0 start|stop|status|fetch" >&2; exit 2 ;;
esac
