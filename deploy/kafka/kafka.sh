#!/usr/bin/env bash
# A local single-node Apache Kafka broker (KRaft) on 127.0.0.1 for the demo and tests.
#   deploy/kafka/kafka.sh start|stop|status|fetch [--secure]
# State lives in $TOKENFUSE_KAFKA_HOME (default .tokenfuse/kafka in the current directory); the
# broker listens on $TOKENFUSE_KAFKA_PORT (default 9092), its controller on the port after it.
# The jars come from Maven Central through pom.xml and are cached in ~/.m2.
#
# --secure (or TOKENFUSE_KAFKA_SECURE=1): TLS + SASL SCRAM with least-privilege ACLs, in its own
# home (default .tokenfuse/kafka-secure) on port 9094 by default, and a TLS client-auth listener
# on $TOKENFUSE_KAFKA_MTLS_PORT (default: the port after the controller's). The first start
# generates a CA, the broker's certificate, one SCRAM user and one client certificate per
# tokenfuse role plus the SCRAM user `admin` (the only super user), and writes
# <home>/secure/<role>.env and <role>-mtls.env: the TOKENFUSE_* settings of each role. Each start
# then creates the topics and applies the ACLs of tokenfuse/kafka/acls.py as admin, for
# $TOKENFUSE_TOPIC_PREFIX and $TOKENFUSE_APP_ID like every tokenfuse command, with the Python of
# $TOKENFUSE_PYTHON (default python3). See docs/security.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
action=${1:-}
secure=${TOKENFUSE_KAFKA_SECURE:-0}
[[ ${2:-} == --secure ]] && secure=1
[[ $secure == 0 || $secure == 1 ]] || { echo "kafka.sh: TOKENFUSE_KAFKA_SECURE must be 0 or 1" >&2; exit 2; }
base=$PWD/.tokenfuse/kafka
if ((secure)); then
  home=${TOKENFUSE_KAFKA_HOME:-$base-secure}; port=${TOKENFUSE_KAFKA_PORT:-9094}
  mtls_port=${TOKENFUSE_KAFKA_MTLS_PORT:-$((port + 2))}
else
  home=${TOKENFUSE_KAFKA_HOME:-$base}; port=${TOKENFUSE_KAFKA_PORT:-9092}
fi
libs=${TOKENFUSE_KAFKA_LIBS:-$([[ -n ${TOKENFUSE_KAFKA_HOME:-} ]] && echo "$home/libs" || echo "$base/libs")}
data=$home/data
secrets=$home/secure
pidfile=$home/kafka.pid
log=$home/server.log
heap=${TOKENFUSE_KAFKA_HEAP:-512m}
timeout=${TOKENFUSE_KAFKA_START_TIMEOUT:-90}
python=${TOKENFUSE_PYTHON:-python3}
roles=(runtime worker sink operator dashboard autopilot)  # tokenfuse/kafka/acls.py ROLES (a test checks they agree)

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

# Secrets of the secured mode, made once per home: a CA, the broker's key and certificate (PKCS12
# keystore), and random passwords for admin and each role. Files readable by their owner only.
make_secrets() {
  [[ -f $secrets/.complete ]] && return
  command -v openssl >/dev/null || die "openssl is required for --secure (install openssl)"
  rm -rf "$secrets"; mkdir -p "$secrets"; chmod 700 "$secrets"
  local s=$secrets
  openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=tokenfuse local CA" \
    -keyout "$s/ca.key" -out "$s/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$s/broker.key" -out "$s/broker.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' > "$s/broker.ext"
  openssl x509 -req -in "$s/broker.csr" -CA "$s/ca.pem" -CAkey "$s/ca.key" -CAcreateserial -days 825 \
    -extfile "$s/broker.ext" -out "$s/broker.pem" 2>/dev/null
  openssl rand -hex 24 > "$s/store.password"
  openssl pkcs12 -export -in "$s/broker.pem" -inkey "$s/broker.key" -name broker \
    -passout "file:$s/store.password" -out "$s/broker.p12"
  local user
  for user in admin "${roles[@]}"; do openssl rand -hex 24 > "$s/$user.password"; done
  # Client certificates for the TLS client-auth listener: subject CN=tokenfuse-<role>.
  printf 'extendedKeyUsage=clientAuth\n' > "$s/client.ext"
  for user in "${roles[@]}"; do
    openssl req -newkey rsa:2048 -nodes -subj "/CN=tokenfuse-$user" -keyout "$s/$user.key" -out "$s/$user.csr" 2>/dev/null
    openssl x509 -req -in "$s/$user.csr" -CA "$s/ca.pem" -CAkey "$s/ca.key" -CAcreateserial -days 825 \
      -extfile "$s/client.ext" -out "$s/$user.pem" 2>/dev/null
  done
  chmod 600 "$s"/*
  touch "$s/.complete"
}

# <home>/secure/<role>.env: what a process of that role needs to connect (`set -a; . worker.env`)
# with SASL SCRAM; <role>-mtls.env: the same with its TLS client certificate instead.
write_env_files() {
  local user name
  for user in admin "${roles[@]}"; do
    name=$([[ $user == admin ]] && echo admin || echo "tokenfuse-$user")
    cat > "$secrets/$user.env" <<ENV
TOKENFUSE_BOOTSTRAP_SERVERS=127.0.0.1:$port
TOKENFUSE_SECURITY_PROTOCOL=SASL_SSL
TOKENFUSE_SASL_MECHANISM=SCRAM-SHA-512
TOKENFUSE_SASL_USERNAME=$name
TOKENFUSE_SASL_PASSWORD=$(cat "$secrets/$user.password")
TOKENFUSE_SSL_CA_FILE=$secrets/ca.pem
ENV
    chmod 600 "$secrets/$user.env"
    [[ $user == admin ]] && continue
    cat > "$secrets/$user-mtls.env" <<ENV
TOKENFUSE_BOOTSTRAP_SERVERS=127.0.0.1:$mtls_port
TOKENFUSE_SECURITY_PROTOCOL=SSL
TOKENFUSE_SSL_CA_FILE=$secrets/ca.pem
TOKENFUSE_SSL_CERT_FILE=$secrets/$user.pem
TOKENFUSE_SSL_KEY_FILE=$secrets/$user.key
ENV
    chmod 600 "$secrets/$user-mtls.env"
  done
}

# Both SCRAM mechanisms for admin and for each role's user, written into the metadata log at format.
scram_args() {
  local user name mech
  for user in admin "${roles[@]}"; do
    name=$([[ $user == admin ]] && echo admin || echo "tokenfuse-$user")
    for mech in SCRAM-SHA-512 SCRAM-SHA-256; do
      printf -- '--add-scram\0%s=[name=%s,password=%s]\0' "$mech" "$name" "$(cat "$secrets/$user.password")"
    done
  done
}

write_config() {
  local mode=plaintext admin_password="" store_password=""
  if ((secure)); then
    mode=secure admin_password=$(cat "$secrets/admin.password") store_password=$(cat "$secrets/store.password")
  fi
  (umask 077; cat "$here/server.properties" "$here/$mode.properties" | sed -e "s#@LOG_DIRS@#$data#" \
    -e "s#@CONTROLLER_PORT@#$((port + 1))#g" -e "s#@MTLS_PORT@#${mtls_port:-}#g" -e "s#@PORT@#$port#g" \
    -e "s#@SECRETS@#$secrets#g" \
    -e "s#@ADMIN_PASSWORD@#$admin_password#g" -e "s#@STORE_PASSWORD@#$store_password#g" > "$home/server.properties")
}

format() {
  [[ -f $data/meta.properties ]] && return
  local extra=()
  if ((secure)); then mapfile -d '' extra < <(scram_args); fi
  java -cp "$libs/*" kafka.tools.StorageTool format --standalone --ignore-formatted \
    -t "$(java -cp "$libs/*" kafka.tools.StorageTool random-uuid)" "${extra[@]}" \
    -c "$home/server.properties" >"$home/format.log" 2>&1 || { cat "$home/format.log" >&2; die "storage format failed"; }
}

# As admin: the topics and every role's ACLs (tokenfuse topics create / topics acls --apply).
setup_secure() {
  local pythonpath=${PYTHONPATH:-}
  [[ -d $here/../../streams/tokenfuse ]] && pythonpath=$here/../../streams${pythonpath:+:$pythonpath}
  local cmd
  for cmd in create "acls --apply"; do
    # shellcheck disable=SC2086  # $cmd is two words on purpose
    (set -a; . "$secrets/admin.env"; PYTHONPATH=$pythonpath "$python" -m tokenfuse.cli.main topics $cmd) >&2 \
      || die "tokenfuse topics $cmd failed as admin (see above)"
  done
}

start() {
  if running; then echo "kafka.sh: already running (pid $(cat "$pidfile"))"; return; fi
  fetch
  mkdir -p "$data"
  if ((secure)); then
    [[ -f $data/meta.properties && ! -f $secrets/.complete ]] \
      && die "$home holds a broker formatted without --secure; use another TOKENFUSE_KAFKA_HOME"
    make_secrets; write_env_files
  elif [[ -d $secrets ]]; then
    die "$home holds a secured broker; start it with --secure"
  fi
  write_config
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
      - {name: kafka.authorizer.logger, level: INFO}  # secured mode: every denied request
YAML
  format
  : > "$log"
  nohup java -Xms"$heap" -Xmx"$heap" -XX:+UseG1GC \
    -Dlog4j2.configurationFile="$home/log4j2.yaml" \
    -cp "$libs/*" kafka.Kafka "$home/server.properties" >>"$log" 2>&1 &
  echo $! > "$pidfile"
  for ((i = 0; i < timeout * 10; i++)); do
    if grep -q "Kafka Server started" "$log"; then
      if ((secure)); then
        setup_secure
        echo "kafka.sh: secured broker up on SASL_SSL 127.0.0.1:$port and TLS client auth 127.0.0.1:$mtls_port" \
          "(pid $(cat "$pidfile")); settings per role in $secrets/<role>.env, <role>-mtls.env"
      else
        echo "kafka.sh: broker up on 127.0.0.1:$port (pid $(cat "$pidfile"), log $log)"
      fi
      return
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

case "$action" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  fetch) fetch ;;
  *) echo "usage: $0 start|stop|status|fetch [--secure]" >&2; exit 2 ;;
esac
