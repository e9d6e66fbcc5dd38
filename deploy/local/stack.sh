#!/usr/bin/env bash
# Local Consilium infrastructure without Docker: Apache Kafka 4 (KRaft, one node),
# PostgreSQL 15 and Redis, all on 127.0.0.1 only.
#
#   deploy/local/stack.sh up                   install what is missing, start, provision (idempotent)
#   deploy/local/stack.sh down                 stop everything (harmless when already down)
#   deploy/local/stack.sh status               one line per component; exit 1 if any is down
#   deploy/local/stack.sh logs [kafka|postgres|redis] [-f]
#   deploy/local/stack.sh reset [--all]        down + drop the Consilium databases/roles + wipe
#                                              $CONSILIUM_STACK_DIR (--all: the Kafka jars too)
#   deploy/local/stack.sh kafka-run DIR PORT CONTROLLER_PORT [key=value ...]
#                                              a private single-node broker in the foreground,
#                                              state in DIR, on the stack's jars (test suites
#                                              that kill and restart brokers use it)
#
# State lives under $CONSILIUM_STACK_DIR (default <repo>/.stack): kafka/libs (jars),
# kafka/data, logs/, run/ (pid files), redis/. See deploy/README.md.
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEPLOY="$ROOT/deploy"
STACK="${CONSILIUM_STACK_DIR:-$ROOT/.stack}"
KAFKA_DIR="$STACK/kafka"
KAFKA_LIBS="$KAFKA_DIR/libs"
KAFKA_DATA="$KAFKA_DIR/data"
KAFKA_CONFIG="$KAFKA_DIR/server.properties"
LOGS="$STACK/logs"
RUN="$STACK/run"
REDIS_DIR="$STACK/redis"
VENV_PY="$ROOT/.venv/bin/python"

HOST=127.0.0.1
KAFKA_PORT=9092
KAFKA_CONTROLLER_PORT=9093
PG_VERSION=15
PG_CLUSTER=main
PG_PORT=5432
REDIS_PORT=6379
SERVICES=(assignment submission consensus export)

KAFKA_START_TIMEOUT="${CONSILIUM_KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT="${CONSILIUM_KAFKA_STOP_TIMEOUT:-30}"
# Small heap: a dev broker on a 2-core machine next to Postgres, Redis and four services.
KAFKA_HEAP_OPTS="${CONSILIUM_KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
JAVA="${JAVA:-java}"

# ---------------------------------------------------------------------------- helpers

say() { printf '%s\n' "$*"; }
warn() { printf 'stack.sh: warning: %s\n' "$*" >&2; }
die() { printf 'stack.sh: error: %s\n' "$*" >&2; exit 1; }

# Microseconds since the epoch, from bash's own clock (no fork).
now_us() { local t="${EPOCHREALTIME/[.,]/}"; printf '%s' "$t"; }
fmt_secs() { printf '%d.%01ds' "$(($1 / 1000000))" "$((($1 % 1000000) / 100000))"; }

# step NAME FUNCTION...: run one step of `up` and print how long it took.
step() {
    local name="$1" t0
    shift
    t0="$(now_us)"
    "$@" # a failing step dies (set -e); no `||` here, it would switch errexit off inside
    printf '  %-22s %7s\n' "$name" "$(fmt_secs $(($(now_us) - t0)))"
}

# True while PID is a live process; a zombie (exited, not yet reaped by init) counts as dead.
proc_alive() {
    local stat
    { stat="$(<"/proc/$1/stat")"; } 2>/dev/null || return 1
    stat="${stat##*) }"
    [[ ${stat:0:1} != [ZX] ]]
}

# True when something accepts TCP connections on 127.0.0.1:PORT (bash's /dev/tcp, no tools).
port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

as_root() {
    if [[ $EUID -eq 0 ]]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "need root (or sudo) to run: $*"; fi
}

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null || die "cannot install $* : no apt-get on this machine; install it by hand"
    say "  installing with apt: $*"
    if [[ $APT_UPDATED -eq 0 ]]; then
        as_root apt-get update -qq || die "apt-get update failed"
        APT_UPDATED=1
    fi
    # 9>&-: packages may start daemons; they must not inherit our lock.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" 9>&- \
        || die "apt-get install $* failed"
}

# Run as the postgres OS user (peer authentication on the Unix socket).
as_postgres() {
    if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"
    else sudo -u postgres -- "$@"; fi
}

# Print the last lines of a log file, indented, to stderr (used when something fails to start).
show_tail() {
    local f="$1" n="${2:-30}"
    [[ -f $f ]] || return 0
    printf -- '--- last %s lines of %s ---\n' "$n" "$f" >&2
    tail -n "$n" "$f" | sed 's/^/    /' >&2
}

ensure_dirs() { mkdir -p "$KAFKA_DIR" "$KAFKA_DATA" "$LOGS" "$RUN" "$REDIS_DIR"; }

# Serialise concurrent invocations (two `up`s at once would both start a broker).
# Every daemon we start gets `9>&-`, or it would hold this lock for as long as it runs.
take_lock() {
    mkdir -p "$RUN"
    exec 9>"$RUN/stack.lock"
    flock -w 600 9 || die "another stack.sh is still running (lock $RUN/stack.lock)"
}

# ---------------------------------------------------------------------------- java / kafka

java_major() {
    "$JAVA" -version 2>&1 | awk -F'"' '/version/ { split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit }'
}

ensure_java() {
    local major=""
    command -v "$JAVA" >/dev/null && major="$(java_major)"
    if [[ -z $major || $major -lt 17 ]]; then
        # Kafka 4 brokers need Java 17 or newer.
        apt_install openjdk-17-jre-headless
        local candidates=(/usr/lib/jvm/java-17-openjdk-*/bin/java)
        JAVA="${candidates[0]}"
        [[ -x $JAVA ]] || die "openjdk-17 installed but no java binary found under /usr/lib/jvm"
    fi
}

ensure_maven() {
    command -v mvn >/dev/null || apt_install maven
}

# The jars come from Maven Central through deploy/kafka/pom.xml. They are refreshed only
# when the pom changes (its hash is kept in libs/.stamp), so a warm `up` never runs mvn.
kafka_libs() {
    local pom="$DEPLOY/kafka/pom.xml" want tmp
    want="$(sha256sum "$pom" | cut -d' ' -f1)"
    if [[ -f $KAFKA_LIBS/.stamp && "$(<"$KAFKA_LIBS/.stamp")" == "$want" ]] \
        && compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar" >/dev/null \
        && compgen -G "$KAFKA_LIBS/kafka-tools-[0-9]*.jar" >/dev/null; then
        return 0
    fi
    if kafka_pid >/dev/null; then
        warn "deploy/kafka/pom.xml changed but Kafka is running on the old jars; run 'stack.sh down' then 'up'"
        return 0
    fi
    ensure_maven
    # Resolve into a temporary folder and swap it in, so an interrupted download never
    # leaves a half-filled libs/ that looks complete.
    tmp="$KAFKA_DIR/libs.tmp.$$"
    rm -rf "$tmp"
    if ! mvn -B -q -f "$pom" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$LOGS/mvn.log" 2>&1; then
        show_tail "$LOGS/mvn.log" 40
        rm -rf "$tmp"
        die "could not fetch the Kafka jars with Maven (full log: $LOGS/mvn.log)"
    fi
    printf '%s\n' "$want" >"$tmp/.stamp"
    rm -rf "$KAFKA_LIBS"
    mv "$tmp" "$KAFKA_LIBS"
}

# Run a Kafka command-line tool from the jars. Short-lived JVM: tuned for start-up time.
kafka_tool() {
    timeout "${CONSILIUM_KAFKA_TOOL_TIMEOUT:-60}" "$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto \
        -Dlog4j2.configurationFile="$DEPLOY/kafka/tools-log4j2.xml" \
        -cp "$KAFKA_LIBS/*" "$@"
}

kafka_topics() {
    kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$HOST:$KAFKA_PORT" "$@"
}

kafka_topics_list() { kafka_topics --list --exclude-internal; }

# Render the config template; the data dir depends on $CONSILIUM_STACK_DIR.
kafka_config() {
    local tmp="$KAFKA_CONFIG.tmp.$$"
    sed "s|@KAFKA_DATA_DIR@|$KAFKA_DATA|g" "$DEPLOY/kafka/server.properties" >"$tmp"
    if [[ -f $KAFKA_CONFIG ]] && cmp -s "$tmp" "$KAFKA_CONFIG"; then
        rm -f "$tmp"
    else
        mv "$tmp" "$KAFKA_CONFIG"
        kafka_pid >/dev/null && warn "Kafka config changed while Kafka runs; 'stack.sh down' then 'up' to apply it"
    fi
    return 0
}

# Format the KRaft log dir once. The cluster id is generated once and kept in kafka/cluster.id;
# an already formatted data dir is the truth (meta.properties), whatever the id file says.
kafka_format() {
    local id_file="$KAFKA_DIR/cluster.id" id
    if [[ -f $KAFKA_DATA/meta.properties ]]; then
        id="$(sed -n 's/^cluster\.id=//p' "$KAFKA_DATA/meta.properties")"
        [[ -n $id ]] && printf '%s\n' "$id" >"$id_file"
        return 0
    fi
    if [[ ! -s $id_file ]]; then
        kafka_tool kafka.tools.StorageTool random-uuid >"$id_file.tmp" || die "StorageTool random-uuid failed"
        mv "$id_file.tmp" "$id_file"
    fi
    id="$(<"$id_file")"
    kafka_tool kafka.tools.StorageTool format --ignore-formatted \
        --cluster-id "$id" --config "$KAFKA_CONFIG" >"$LOGS/kafka-format.log" 2>&1 \
        || { show_tail "$LOGS/kafka-format.log"; die "formatting $KAFKA_DATA failed"; }
}

# True when PID is a JVM running kafka.Kafka with this stack's config file.
is_our_kafka() {
    [[ $1 =~ ^[0-9]+$ ]] && proc_alive "$1" \
        && tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | grep -qF "kafka.Kafka $KAFKA_CONFIG"
}

# Print the pid of our broker if it runs. The pid file is checked against the process's
# command line (a stale pid may belong to something else by now); without a pid file,
# look for the broker started with our config file (e.g. the pid file was deleted).
kafka_pid() {
    local pid="" p
    [[ -f $RUN/kafka.pid ]] && pid="$(<"$RUN/kafka.pid")"
    if is_our_kafka "$pid"; then
        printf '%s\n' "$pid"
        return 0
    fi
    for p in /proc/[0-9]*; do
        if is_our_kafka "${p#/proc/}"; then
            printf '%s\n' "${p#/proc/}"
            return 0
        fi
    done
    return 1
}

kafka_start() {
    local pid
    if pid="$(kafka_pid)"; then
        printf '%s\n' "$pid" >"$RUN/kafka.pid"
        return 0
    fi
    if port_open "$KAFKA_PORT" || port_open "$KAFKA_CONTROLLER_PORT"; then
        die "port $KAFKA_PORT or $KAFKA_CONTROLLER_PORT is taken by a process that is not this stack's Kafka (see: ss -ltnp)"
    fi
    local -a heap
    read -r -a heap <<<"$KAFKA_HEAP_OPTS"
    : >"$LOGS/kafka.out"
    # setsid: the broker must outlive this shell and its process group. The inner shell
    # writes its own pid, then exec's java, so the pid file names the JVM itself.
    # shellcheck disable=SC2016  # $$ and $0.. expand in the inner shell on purpose
    setsid bash -c 'echo $$ >"$0"; shift; exec "$@"' "$RUN/kafka.pid" \
        nohup "$JAVA" "${heap[@]}" \
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
        -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true -XX:ErrorFile="$LOGS/hs_err_pid%p.log" \
        -Dkafka.logs.dir="$LOGS" -Dlog4j2.configurationFile="$DEPLOY/kafka/log4j2.xml" \
        -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_CONFIG" \
        </dev/null >>"$LOGS/kafka.out" 2>&1 9>&- &
    disown || true
    # Wait until the pid file names the JVM, so later checks don't mistake "not yet" for "died".
    local i
    for ((i = 0; i < 50; i++)); do
        kafka_pid >/dev/null && return 0
        sleep 0.1
    done
    kafka_fail "Kafka did not start"
}

kafka_prepare() {
    kafka_config
    kafka_format
}

kafka_fail() {
    show_tail "$LOGS/kafka.out" 20
    show_tail "$LOGS/kafka.log" 40
    die "$1 (logs: $LOGS/kafka.log, $LOGS/kafka.out)"
}

# Ready = the PLAINTEXT port accepts connections and a metadata request (topic list) works.
# Leaves the topic list in KAFKA_TOPIC_LIST for kafka_topics_ensure.
KAFKA_TOPIC_LIST=""
kafka_wait() {
    local deadline=$((SECONDS + KAFKA_START_TIMEOUT))
    until port_open "$KAFKA_PORT"; do
        kafka_pid >/dev/null || kafka_fail "Kafka exited during start-up"
        ((SECONDS < deadline)) || kafka_fail "Kafka did not open $HOST:$KAFKA_PORT within ${KAFKA_START_TIMEOUT}s"
        sleep 0.2
    done
    until KAFKA_TOPIC_LIST="$(kafka_topics_list 2>>"$LOGS/kafka-tools.log")"; do
        kafka_pid >/dev/null || kafka_fail "Kafka exited during start-up"
        ((SECONDS < deadline)) || kafka_fail "Kafka does not answer metadata requests within ${KAFKA_START_TIMEOUT}s"
        sleep 1
    done
}

# The topic catalogue belongs to the Python code: `python -m shared.topics` prints one line
# per topic, "<name> <partitions> [key=value ...]". Missing topics are created; existing
# ones are left alone (a changed partition count or config is not applied).
kafka_topics_ensure() {
    local spec name partitions configs_str kv line existing=0 failed=0 running=0
    local -a configs args missing=()
    [[ -x $VENV_PY ]] || die "no Python venv at $ROOT/.venv: the topic list comes from 'python -m shared.topics'. Create it: python3.11 -m venv .venv && .venv/bin/pip install -e '.[dev]'"
    spec="$(cd "$ROOT" && "$VENV_PY" -m shared.topics)" \
        || die "'$VENV_PY -m shared.topics' failed; it must print '<topic> <partitions> [key=value ...]' per line"
    [[ -n $spec ]] || die "'python -m shared.topics' printed no topics"
    # Validate everything before creating anything.
    while IFS= read -r line; do
        read -r name partitions configs_str <<<"${line%%#*}" || true
        [[ -z ${name:-} ]] && continue
        [[ $name =~ ^[A-Za-z0-9._-]+$ ]] || die "shared.topics: bad topic name in line: $line"
        [[ ${partitions:-} =~ ^[1-9][0-9]*$ ]] || die "shared.topics: bad partition count in line: $line"
        read -r -a configs <<<"${configs_str:-}"
        for kv in "${configs[@]}"; do
            [[ $kv =~ ^[a-z0-9.]+=[^[:space:]]+$ ]] || die "shared.topics: bad config '$kv' in line: $line"
        done
        if grep -qxF -- "$name" <<<"$KAFKA_TOPIC_LIST"; then
            existing=$((existing + 1))
        else
            missing+=("$line")
        fi
    done <<<"$spec"
    # One JVM per topic (~1 s each): run three at a time, it is the slow part of a cold start.
    for line in "${missing[@]}"; do
        read -r name partitions configs_str <<<"${line%%#*}"
        read -r -a configs <<<"${configs_str:-}"
        args=(--create --if-not-exists --topic "$name" --partitions "$partitions" --replication-factor 1)
        for kv in "${configs[@]}"; do args+=(--config "$kv"); done
        kafka_topics "${args[@]}" >/dev/null 2>>"$LOGS/kafka-tools.log" &
        running=$((running + 1))
        if ((running >= 3)); then
            wait -n || failed=$((failed + 1))
            running=$((running - 1))
        fi
    done
    while ((running > 0)); do
        wait -n || failed=$((failed + 1))
        running=$((running - 1))
    done
    if ((failed)); then
        show_tail "$LOGS/kafka-tools.log" 20
        die "$failed topic(s) could not be created (log: $LOGS/kafka-tools.log)"
    fi
    say "  topics: ${#missing[@]} created, $existing already there"
}

kafka_stop() {
    local pid i
    pid="$(kafka_pid)" || { rm -f "$RUN/kafka.pid"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    # A single-node controlled shutdown takes a few seconds; don't hang forever.
    for ((i = 0; i < KAFKA_STOP_TIMEOUT * 5; i++)); do
        proc_alive "$pid" || break
        sleep 0.2
    done
    if proc_alive "$pid"; then
        warn "Kafka (pid $pid) did not stop within ${KAFKA_STOP_TIMEOUT}s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$RUN/kafka.pid"
}

# ---------------------------------------------------------------------------- postgres

pg_bin() { printf '/usr/lib/postgresql/%s/bin' "$PG_VERSION"; }

ensure_postgres_installed() {
    if ! command -v pg_ctlcluster >/dev/null || [[ ! -x "$(pg_bin)/postgres" ]]; then
        apt_install "postgresql-$PG_VERSION"
    fi
    command -v psql >/dev/null || apt_install postgresql-client
    # The Debian package creates 15/main; create it if someone dropped it.
    if ! pg_lsclusters -h 2>/dev/null | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1 == v && $2 == c { f = 1 } END { exit !f }'; then
        as_root pg_createcluster "$PG_VERSION" "$PG_CLUSTER" >/dev/null
    fi
    local port
    port="$(pg_lsclusters -h | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1 == v && $2 == c { print $3 }')"
    [[ $port == "$PG_PORT" ]] || die "cluster $PG_VERSION/$PG_CLUSTER listens on port $port, expected $PG_PORT (see /etc/postgresql/$PG_VERSION/$PG_CLUSTER/postgresql.conf)"
}

pg_running() { pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" status >/dev/null 2>&1; }

pg_pid() {
    local f="/var/lib/postgresql/$PG_VERSION/$PG_CLUSTER/postmaster.pid"
    pg_running && [[ -r $f ]] && head -n 1 "$f"
}

postgres_start() {
    if ! pg_running; then
        # "already running" (a race with another starter) is fine: check the status again.
        as_root pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start 2>"$LOGS/pg_ctlcluster.err" 9>&- || pg_running || {
            cat "$LOGS/pg_ctlcluster.err" >&2
            show_tail "/var/log/postgresql/postgresql-$PG_VERSION-$PG_CLUSTER.log"
            die "could not start PostgreSQL $PG_VERSION/$PG_CLUSTER"
        }
    fi
    local i
    for ((i = 0; i < 150; i++)); do
        pg_isready -q -h "$HOST" -p "$PG_PORT" && return 0
        sleep 0.2
    done
    die "PostgreSQL does not accept connections on $HOST:$PG_PORT (log: /var/log/postgresql/postgresql-$PG_VERSION-$PG_CLUSTER.log)"
}

pg_password() {
    local svc="$1" var
    var="CONSILIUM_PG_PASSWORD_${svc^^}"
    printf '%s' "${!var:-consilium_$svc}"
}

# Apply deploy/postgres/init.sql (the same file docker-compose mounts), then prove that
# every role can log in over TCP with its password, the way the services do.
postgres_provision() {
    local tmp svc sp
    local -a envs=()
    # init.sql reads the passwords with \getenv (the same way inside the postgres image).
    for svc in "${SERVICES[@]}" admin; do
        envs+=("CONSILIUM_PG_PASSWORD_${svc^^}=$(pg_password "$svc")")
    done
    # The postgres user may not be able to read the repository (e.g. under /root): copy.
    tmp="$(mktemp -d)"
    cp "$DEPLOY/postgres/init.sql" "$DEPLOY/postgres/schemas.psql" "$tmp/"
    chmod 755 "$tmp" && chmod 644 "$tmp"/*
    if ! (cd "$tmp" && as_postgres env "${envs[@]}" psql -X -q -p "$PG_PORT" -d postgres -v ON_ERROR_STOP=1 \
        -f "$tmp/init.sql" >"$LOGS/postgres-init.log" 2>&1); then
        rm -rf "$tmp"
        show_tail "$LOGS/postgres-init.log"
        die "deploy/postgres/init.sql failed (log: $LOGS/postgres-init.log)"
    fi
    rm -rf "$tmp"
    for svc in "${SERVICES[@]}"; do
        sp="$(PGPASSWORD="$(pg_password "$svc")" psql -X -qAt -h "$HOST" -p "$PG_PORT" \
            -U "consilium_$svc" -d consilium -c 'show search_path' 2>&1)" \
            || die "consilium_$svc cannot log in over TCP: $sp (check pg_hba.conf allows scram-sha-256 from 127.0.0.1)"
        [[ $sp == "$svc" ]] || die "consilium_$svc has search_path '$sp', expected '$svc'"
    done
    PGPASSWORD="$(pg_password admin)" psql -X -qAt -h "$HOST" -p "$PG_PORT" -U consilium_admin \
        -d consilium_test -c 'select 1' >/dev/null || die "consilium_admin cannot log in over TCP"
}

postgres_stop() {
    pg_running || return 0
    as_root pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" stop -m fast
}

# ---------------------------------------------------------------------------- redis

redis_ping() { [[ "$(timeout 2 redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]; }

ensure_redis_installed() {
    command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return 0
    # Debian's package may start its own instance through its init script; if it does,
    # redis_start finds a PONG on 127.0.0.1:6379 and uses that one.
    apt_install redis-server
}

redis_start() {
    redis_ping && return 0
    port_open "$REDIS_PORT" && die "port $REDIS_PORT is taken but does not answer PING as Redis (see: ss -ltnp)"
    # Redis holds only what can be rebuilt (DESIGN.md): no RDB/AOF persistence.
    redis-server --daemonize yes --bind "$HOST" --port "$REDIS_PORT" --protected-mode yes \
        --pidfile "$RUN/redis.pid" --logfile "$LOGS/redis.log" --dir "$REDIS_DIR" \
        --save '' --appendonly no 9>&- \
        || { show_tail "$LOGS/redis.log"; die "redis-server failed to start"; }
    local i
    for ((i = 0; i < 50; i++)); do
        redis_ping && return 0
        sleep 0.1
    done
    show_tail "$LOGS/redis.log"
    die "Redis does not answer PING on $HOST:$REDIS_PORT (log: $LOGS/redis.log)"
}

redis_pid() {
    local pid
    pid="$(timeout 2 redis-cli -h "$HOST" -p "$REDIS_PORT" info server 2>/dev/null | sed -n 's/^process_id:\([0-9]*\).*/\1/p')"
    [[ -n $pid ]] && printf '%s\n' "$pid"
}

redis_stop() {
    local i
    if redis_ping; then
        timeout 5 redis-cli -h "$HOST" -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
        for ((i = 0; i < 50; i++)); do
            redis_ping || break
            sleep 0.1
        done
    fi
    rm -f "$RUN/redis.pid"
}

# ---------------------------------------------------------------------------- commands

cmd_up() {
    local t0
    t0="$(now_us)"
    take_lock
    ensure_dirs
    say "stack.sh up (state: $STACK)"
    step "java" ensure_java
    step "kafka jars" kafka_libs
    step "kafka config+format" kafka_prepare
    step "kafka start" kafka_start
    step "postgres install" ensure_postgres_installed
    step "postgres start" postgres_start
    step "redis install" ensure_redis_installed
    step "redis start" redis_start
    step "postgres provision" postgres_provision
    step "kafka ready" kafka_wait
    step "kafka topics" kafka_topics_ensure
    printf '  %-22s %7s\n' "total" "$(fmt_secs $(($(now_us) - t0)))"
    say "up: kafka $HOST:$KAFKA_PORT, postgres $HOST:$PG_PORT, redis $HOST:$REDIS_PORT"
}

cmd_down() {
    take_lock
    kafka_stop
    say "kafka: stopped"
    if command -v redis-cli >/dev/null; then redis_stop; fi
    say "redis: stopped"
    if command -v pg_ctlcluster >/dev/null; then postgres_stop; fi
    say "postgres: stopped"
}

cmd_status() {
    local down=0 pid topics
    if pid="$(kafka_pid)" && port_open "$KAFKA_PORT"; then
        if topics="$(kafka_topics_list 2>/dev/null)"; then
            topics="$(grep -c . <<<"$topics" || true)"
        else
            topics="?"
            down=1
        fi
        printf '%-9s running  pid %-7s port %s  topics %s\n' kafka "$pid" "$KAFKA_PORT" "$topics"
    else
        printf '%-9s stopped\n' kafka
        down=1
    fi
    if command -v pg_ctlcluster >/dev/null && pg_running && pg_isready -q -h "$HOST" -p "$PG_PORT"; then
        printf '%-9s running  pid %-7s port %s\n' postgres "$(pg_pid || echo '?')" "$PG_PORT"
    else
        printf '%-9s stopped\n' postgres
        down=1
    fi
    if command -v redis-cli >/dev/null && redis_ping; then
        printf '%-9s running  pid %-7s port %s\n' redis "$(redis_pid || echo '?')" "$REDIS_PORT"
    else
        printf '%-9s stopped\n' redis
        down=1
    fi
    return "$down"
}

cmd_logs() {
    local what=all follow=0 arg f pglog="/var/log/postgresql/postgresql-$PG_VERSION-$PG_CLUSTER.log"
    for arg in "$@"; do
        case "$arg" in
            -f | --follow) follow=1 ;;
            kafka | postgres | redis) what="$arg" ;;
            *) die "usage: stack.sh logs [kafka|postgres|redis] [-f]" ;;
        esac
    done
    local -a files=() present=()
    case "$what" in
        kafka) files=("$LOGS/kafka.log") ;;
        postgres) files=("$pglog") ;;
        redis) files=("$LOGS/redis.log") ;;
        all) files=("$LOGS/kafka.log" "$pglog" "$LOGS/redis.log") ;;
    esac
    for f in "${files[@]}"; do
        if [[ -f $f ]]; then present+=("$f"); else warn "no log yet at $f"; fi
    done
    ((${#present[@]})) || return 1
    if ((follow)); then
        exec tail -n 50 -F "${present[@]}"
    fi
    tail -n 100 "${present[@]}"
}

# down, then drop the Consilium databases and roles, then wipe the state folder. The jars
# are a cache and survive unless --all is given (re-downloading them is the slow part).
cmd_reset() {
    local all=0
    [[ ${1:-} == --all ]] && all=1
    take_lock
    ensure_dirs
    kafka_stop
    if command -v redis-cli >/dev/null; then redis_stop; fi
    if command -v pg_ctlcluster >/dev/null && pg_lsclusters -h 2>/dev/null | grep -q "^$PG_VERSION $PG_CLUSTER "; then
        # Dropping needs a running server; it is stopped again right after.
        postgres_start
        as_postgres psql -X -q -p "$PG_PORT" -d postgres -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
SET client_min_messages = warning;
DROP DATABASE IF EXISTS consilium WITH (FORCE);
DROP DATABASE IF EXISTS consilium_test WITH (FORCE);
DROP ROLE IF EXISTS consilium_admin, consilium_assignment, consilium_submission,
                    consilium_consensus, consilium_export;
SQL
        postgres_stop
    fi
    if ((all)); then
        rm -rf "$STACK"
    else
        find "$STACK" -mindepth 1 -maxdepth 1 ! -name kafka -exec rm -rf {} +
        find "$KAFKA_DIR" -mindepth 1 -maxdepth 1 ! -name libs -exec rm -rf {} +
    fi
    say "reset: stopped; databases consilium, consilium_test and the consilium_* roles dropped;"
    if ((all)); then say "       $STACK removed"; else say "       $STACK wiped (Kafka jars kept; --all removes them too)"; fi
}

# A broker of its own, apart from the stack's: the same jars and config template, its
# state in DIR, the given ports, extra broker settings appended. It runs in the foreground
# (exec: the caller's child is the JVM itself, so a signal reaches the broker), and a
# second run on the same DIR restarts the same cluster. No lock: it shares nothing with
# the stack but the jars, which must already be there (`up` fetches them).
cmd_kafka_run() {
    (($# >= 3)) || die "usage: stack.sh kafka-run DIR PORT CONTROLLER_PORT [key=value ...]"
    local dir="$1" port="$2" controller="$3" kv id
    local -a heap
    shift 3
    read -r -a heap <<<"${CONSILIUM_KAFKA_RUN_HEAP_OPTS:--Xms128m -Xmx384m}"
    [[ $port =~ ^[0-9]+$ && $controller =~ ^[0-9]+$ ]] || die "kafka-run: ports must be numbers"
    compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar" >/dev/null || die "no Kafka jars in $KAFKA_LIBS: run 'stack.sh up' once"
    ensure_java
    mkdir -p "$dir/data" "$dir/logs"
    dir="$(cd "$dir" && pwd)"
    sed -e "s|@KAFKA_DATA_DIR@|$dir/data|g" -e "s|$HOST:$KAFKA_PORT|$HOST:$port|g" \
        -e "s|$HOST:$KAFKA_CONTROLLER_PORT|$HOST:$controller|g" \
        "$DEPLOY/kafka/server.properties" >"$dir/server.properties"
    for kv in "$@"; do
        [[ $kv =~ ^[a-z0-9.]+=[^[:space:]]+$ ]] || die "kafka-run: bad setting '$kv'"
        printf '%s\n' "$kv" >>"$dir/server.properties"
    done
    if [[ ! -f $dir/data/meta.properties ]]; then
        id="$(kafka_tool kafka.tools.StorageTool random-uuid)" || die "StorageTool random-uuid failed"
        kafka_tool kafka.tools.StorageTool format --ignore-formatted --cluster-id "$id" \
            --config "$dir/server.properties" >"$dir/logs/format.log" 2>&1 \
            || { show_tail "$dir/logs/format.log"; die "formatting $dir/data failed"; }
    fi
    exec "$JAVA" "${heap[@]}" \
        -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
        -Dkafka.logs.dir="$dir/logs" -Dlog4j2.configurationFile="$DEPLOY/kafka/log4j2.xml" \
        -cp "$KAFKA_LIBS/*" kafka.Kafka "$dir/server.properties" 9>&-
}

usage() {
    sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

main() {
    local cmd="${1:-}"
    [[ $# -gt 0 ]] && shift
    case "$cmd" in
        up) cmd_up "$@" ;;
        down) cmd_down "$@" ;;
        status) cmd_status "$@" ;;
        logs) cmd_logs "$@" ;;
        reset) cmd_reset "$@" ;;
        kafka-run) cmd_kafka_run "$@" ;;
        -h | --help | help) usage ;;
        *) usage >&2; exit 2 ;;
    esac
}

# Sourcing (for tests of single functions) defines everything without running a command.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then main "$@"; fi
