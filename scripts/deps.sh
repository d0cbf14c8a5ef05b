#!/usr/bin/env bash
# deps.sh starts, checks and stops the real servers that Shanhai's integration tests and native runs talk to, as plain host
# processes (no container engine is assumed):
#
#   scripts/deps.sh up [server...]     start what is not already answering (default: all), wait until each is really ready
#                                      (one this checkout started that is still starting is waited for, not started again;
#                                      interrupted, it starts nothing more and leaves the servers it had started running
#                                      and recorded: down stops them, up again waits for them)
#   scripts/deps.sh down [server...]   stop what this checkout started (default: all)
#   scripts/deps.sh status [server...] show each server as up or down, and whether this checkout started it
#   scripts/deps.sh env                print the connection variables (eval "$(scripts/deps.sh env)")
#   scripts/deps.sh restart pulsar     stop and start it again keeping its data (fault tests)
#   scripts/deps.sh tools              fetch the test tools that are no server (promtool, for deploy's alert rule tests)
#
# Servers: pg redis etcd nats kafka pulsar. PostgreSQL, Redis and etcd come from Debian packages (installed when missing);
# nats-server is built at a pinned version from the Go module proxy because Debian's 2.9 lacks `sync_interval: always`;
# Kafka and Pulsar run from Maven Central jars on the JDK (see scripts/deps/*/pom.xml). tools unpacks promtool from
# Debian's prometheus package (not installed: that would start a Prometheus server). Downloads are cached in
# ${SHANHAI_CACHE:-~/.cache/shanhai}; data lives in var/deps/<server>/ and every log in var/deps/log/.
#
# A server already answering at its address is reused, whoever started it, so several checkouts and engineers share one
# set. Each server has its own lock, so a caller wanting only the fast ones never waits behind a Pulsar start.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEPS=$ROOT/scripts/deps
CACHE=${SHANHAI_CACHE:-$HOME/.cache/shanhai}
# The state directory as the kernel names it (absolute, no symlink, no trailing slash): our_pid compares it with
# /proc/<pid>/cwd, which is always that physical path, and a checkout under a symlinked directory made them differ.
VAR=$(realpath -m -- "${SHANHAI_VAR:-$ROOT/var/deps}")
LOG=$VAR/log
HOST=127.0.0.1

# Ports follow docs/conventions.md; the overrides exist for a machine where one is taken.
PG_PORT=${SHANHAI_PG_PORT:-15432}
REDIS_PORT=${SHANHAI_REDIS_PORT:-16379}
ETCD_PORT=${SHANHAI_ETCD_PORT:-12379}
ETCD_PEER_PORT=${SHANHAI_ETCD_PEER_PORT:-12380}
NATS_PORT=${SHANHAI_NATS_PORT:-14222}
NATS_MONITOR_PORT=${SHANHAI_NATS_MONITOR_PORT:-18222}
KAFKA_PORT=${SHANHAI_KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${SHANHAI_KAFKA_CONTROLLER_PORT:-19093}
PULSAR_PORT=${SHANHAI_PULSAR_PORT:-16650}
PULSAR_HTTP_PORT=${SHANHAI_PULSAR_HTTP_PORT:-18080}
PULSAR_BOOKIE_PORT=${SHANHAI_PULSAR_BOOKIE_PORT:-13181} # standalone's embedded bookie; not used by clients

# Pinned versions; the Kafka and Pulsar ones must match their pom.xml (checked in fetch_maven).
NATS_VERSION=v2.14.9
KAFKA_VERSION=3.9.1
PULSAR_VERSION=4.0.8

ALL=(pg redis etcd nats kafka pulsar)
READY_TIMEOUT=${SHANHAI_READY_TIMEOUT:-120} # seconds per server

say() { printf 'deps: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# fail names the missing piece and where to look, then exits; used inside the per-server subshells.
fail() { # server, message
	say "ERROR: $1: $2"
	say "       log: $LOG/$1.log"
	# A server that died must not look like ours to `status`; one that is merely slow stays for `down` to stop.
	local pidf
	pidf=$(pid_file "$1")
	if [[ -f $pidf ]] && ! kill -0 "$(head -n 1 "$pidf")" 2>/dev/null; then rm -f "$pidf"; fi
	exit 1
}

# pid_file names the file recording the process `up` started for a server, written before that process can answer:
# `down` and `status` go by it. PostgreSQL's is the postmaster's own postmaster.pid in the data directory, which the
# postmaster writes as it starts: a copy made once `pg_ctl start -w` returned was never made for a start cut short
# (an interrupt, the ready timeout), and `down` left that postmaster running, nobody's.
pid_file() { # server
	if [[ $1 == pg ]]; then echo "$VAR/pg/postmaster.pid"; else echo "$VAR/$1.pid"; fi
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# kafka_answers sends Kafka an ApiVersions v0 request and checks for a well-formed answer with no error. A KRaft broker
# opens its client listener to requests only once it has caught up with the metadata log, so an answer means it is
# serving; unlike a JVM probe this costs milliseconds, which matters for `status` and for reusing a running broker.
kafka_answers() {
	local reply
	reply=$(
		exec 2>/dev/null
		exec 3<>"/dev/tcp/$HOST/$KAFKA_PORT" || exit 1
		# size 14 | api key 18 (ApiVersions) | version 0 | correlation id 7 | client id "deps"
		printf '\x00\x00\x00\x0e\x00\x12\x00\x00\x00\x00\x00\x07\x00\x04deps' >&3
		timeout 3 head -c 10 <&3 | od -An -tx1 | tr -d ' \n'
	) || return 1
	# bytes 4-7: correlation id 7, bytes 8-9: error code 0
	[[ ${reply:8:12} == 000000070000 ]]
}

# ---- health checks: each answers "is the server usable", not "is the port open" ----

healthy() {
	case $1 in
	pg) pg_isready -q -h "$HOST" -p "$PG_PORT" -t 2 2>/dev/null ;;
	redis) [[ $(timeout 2 redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]] ;;
	etcd) curl -fsS -m 2 "http://$HOST:$ETCD_PORT/health" 2>/dev/null | grep -q '"health":"true"' ;;
	nats) curl -fsS -m 2 "http://$HOST:$NATS_MONITOR_PORT/healthz?js-enabled-only=true" >/dev/null 2>&1 ;;
	kafka) kafka_answers ;;
	pulsar) curl -fsS -m 3 "http://$HOST:$PULSAR_HTTP_PORT/admin/v2/namespaces/public" 2>/dev/null | grep -q '"public/default"' ;;
	*) die "unknown server $1 (known: ${ALL[*]})" ;;
	esac
}

# wait_ready polls healthy until the deadline, failing early when the process we started has died.
wait_ready() { # server, pid or empty
	local s=$1 pid=${2:-} deadline=$((SECONDS + READY_TIMEOUT))
	until healthy "$s"; do
		if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
			fail "$s" "process $pid exited during startup"
		fi
		((SECONDS < deadline)) || fail "$s" "not ready after ${READY_TIMEOUT}s"
		sleep 1
	done
}

# spawn runs a server in its own session with output to its log, and records the pid so `down` stops only what we started.
# The record is written by the process itself before it becomes the server, so no server runs unrecorded, even when
# an interrupt ends the start in between (setsid, not a process group leader here, becomes the server without forking).
# The server must not inherit fd 9, the per-server lock, or it would hold the lock for its whole life.
spawn() { # server, command...
	local s=$1
	shift
	(
		echo "$BASHPID" >"$VAR/$s.pid"
		exec setsid "$@"
	) >>"$LOG/$s.log" 2>&1 </dev/null 9>&- &
	echo $!
}

# ---- installation and downloads (each under a lock: apt and maven do not like concurrent callers) ----

need_apt() { # package, command that proves it is installed
	command -v "$2" >/dev/null 2>&1 && return 0
	say "installing Debian package $1"
	local sudo=
	[[ $(id -u) == 0 ]] || sudo=sudo
	(
		flock 8
		command -v "$2" >/dev/null 2>&1 && exit 0
		$sudo apt-get update -qq >>"$LOG/apt.log" 2>&1 &&
			DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq -o DPkg::Lock::Timeout=300 "$1" >>"$LOG/apt.log" 2>&1
	) 8>"$CACHE/apt.lock" || die "could not install Debian package $1 (command $2); see $LOG/apt.log"
	command -v "$2" >/dev/null 2>&1 || die "package $1 installed but $2 is not on PATH"
}

# fetch_promtool puts promtool, which deploy's alert rule test runs, in $CACHE/bin from Debian's prometheus package,
# unpacked rather than installed: installing it would also enable and start a Prometheus server on :9090.
fetch_promtool() {
	local bin=$CACHE/bin/promtool sudo=
	[[ -x $bin ]] && return 0
	[[ $(id -u) == 0 ]] || sudo=sudo
	say "fetching promtool from Debian package prometheus (once; cached in $CACHE/bin)"
	(
		flock 8
		[[ -x $bin ]] && exit 0
		tmp=$(mktemp -d) || exit 1
		trap 'rm -rf "$tmp"' EXIT
		cd "$tmp" && $sudo apt-get update -qq >>"$LOG/apt.log" 2>&1 &&
			apt-get download prometheus >>"$LOG/apt.log" 2>&1 &&
			dpkg-deb -x prometheus_*.deb root && mkdir -p "$CACHE/bin" &&
			cp root/usr/bin/promtool "$bin.tmp" && mv "$bin.tmp" "$bin"
	) 8>"$CACHE/apt.lock" || die "could not fetch promtool from Debian package prometheus; see $LOG/apt.log"
}

pg_bin() {
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
	[[ -n $d && -x $d/initdb ]] || return 1
	echo "$d"
}

fetch_nats() {
	NATS_BIN=$CACHE/bin/nats-server-$NATS_VERSION
	[[ -x $NATS_BIN ]] && return 0
	command -v go >/dev/null || fail nats "Go is needed to build nats-server $NATS_VERSION"
	say "nats: building nats-server $NATS_VERSION from the Go module proxy (once; cached in $CACHE/bin)"
	local tmp
	tmp=$(mktemp -d "$CACHE/nats-build.XXXXXX")
	if ! GOBIN=$tmp GOFLAGS=-buildvcs=false GOWORK=off go install "github.com/nats-io/nats-server/v2@$NATS_VERSION" >>"$LOG/nats.log" 2>&1; then
		rm -rf "$tmp"
		fail nats "go install github.com/nats-io/nats-server/v2@$NATS_VERSION failed"
	fi
	mv "$tmp/nats-server" "$NATS_BIN"
	rm -rf "$tmp"
}

# fetch_maven copies what scripts/deps/<server>/pom.xml depends on into the cache: Kafka's runtime jars, or Pulsar's
# distribution tarball, which it then unpacks. A marker file makes a half-finished copy count as missing.
fetch_maven() { # server, version
	local s=$1 v=$2 dir=$CACHE/$1-$2
	[[ -f $dir/.complete ]] && return 0
	grep -q "<$s.version>$v</$s.version>" "$DEPS/$s/pom.xml" || fail "$s" "scripts/deps/$s/pom.xml does not pin $s $v"
	command -v java >/dev/null || fail "$s" "java (JDK 17) is not installed: apt-get install openjdk-17-jdk-headless"
	command -v mvn >/dev/null || fail "$s" "mvn is not installed: apt-get install maven"
	say "$s: fetching $s $v from Maven Central (once; cached in $dir)"
	local out=$dir/lib
	[[ $s == pulsar ]] && out=$dir.download
	# What a fetch cut short left is removed first, the download directory too: copy-dependencies keeps a file already
	# there that is newer than the repository's, so a half-copied Pulsar tarball was kept, and failed to unpack, on
	# every later run.
	rm -rf "$dir" "$dir.download"
	(cd "$DEPS/$s" && mvn -B -q dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$out") \
		>>"$LOG/$s.log" 2>&1 || fail "$s" "mvn dependency:copy-dependencies in scripts/deps/$s failed"
	if [[ $s == pulsar ]]; then
		mkdir -p "$dir"
		tar -xzf "$out"/pulsar-server-distribution-"$v"-bin.tar.gz -C "$dir" --strip-components=1 ||
			fail "$s" "unpacking the Pulsar distribution failed"
		rm -rf "$out"
	fi
	touch "$dir/.complete"
}

# ---- one function per server: start it and wait until ready ----

start_pg() {
	local bin data=$VAR/pg runas=()
	bin=$(pg_bin) || fail pg "PostgreSQL server binaries not found under /usr/lib/postgresql (apt-get install postgresql)"
	# initdb and pg_ctl refuse to run as root: use the package's unprivileged postgres user for the data directory.
	if [[ $(id -u) == 0 ]]; then
		id postgres >/dev/null 2>&1 || fail pg "running as root but there is no postgres user to own the data directory"
		runas=(runuser -u postgres --)
		mkdir -p "$data"
		chown postgres: "$data"
		chmod 700 "$data"
		touch "$LOG/pg.log"
		chown postgres: "$LOG/pg.log"
		"${runas[@]}" test -w "$data" || fail pg "user postgres cannot write $data (a parent directory is not searchable)"
	fi
	if [[ ! -f $data/PG_VERSION ]]; then
		"${runas[@]}" "$bin/initdb" -D "$data" -U shanhai --auth=trust --encoding=UTF8 --no-locale >>"$LOG/pg.log" 2>&1 ||
			fail pg "initdb failed"
	fi
	# fsync off: a test and development server trades crash safety of the OS for speed on a shared disk; the tests
	# exercise process crashes, which this does not weaken. Many test packages run at once, hence max_connections.
	"${runas[@]}" "$bin/pg_ctl" -D "$data" -l "$LOG/pg.log" -w -t "$READY_TIMEOUT" start -o \
		"-c listen_addresses=$HOST -c port=$PG_PORT -c unix_socket_directories=/tmp -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
		>>"$LOG/pg.log" 2>&1 9>&- || fail pg "pg_ctl start failed"
	wait_ready pg
	after_ready pg
}

start_redis() {
	mkdir -p "$VAR/redis"
	# No persistence: tests never rely on Redis surviving a restart.
	redis-server --bind "$HOST" --port "$REDIS_PORT" --save '' --appendonly no --dir "$VAR/redis" \
		--daemonize yes --pidfile "$VAR/redis.pid" --logfile "$LOG/redis.log" >>"$LOG/redis.log" 2>&1 9>&- ||
		fail redis "redis-server did not start"
	wait_ready redis
}

start_etcd() {
	local pid
	mkdir -p "$VAR/etcd"
	pid=$(spawn etcd etcd --name shanhai --data-dir "$VAR/etcd/data" \
		--listen-client-urls "http://$HOST:$ETCD_PORT" --advertise-client-urls "http://$HOST:$ETCD_PORT" \
		--listen-peer-urls "http://$HOST:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://$HOST:$ETCD_PEER_PORT" \
		--initial-cluster "shanhai=http://$HOST:$ETCD_PEER_PORT")
	wait_ready etcd "$pid"
}

start_nats() {
	local pid
	fetch_nats
	mkdir -p "$VAR/nats"
	sed -e "s|@HOST@|$HOST|g" -e "s|@PORT@|$NATS_PORT|g" -e "s|@MONITOR_PORT@|$NATS_MONITOR_PORT|g" \
		-e "s|@STORE@|$VAR/nats|g" "$DEPS/nats/nats.conf" >"$VAR/nats/nats.conf"
	pid=$(spawn nats "$NATS_BIN" -c "$VAR/nats/nats.conf")
	wait_ready nats "$pid"
}

kafka_lib() { echo "$CACHE/kafka-$KAFKA_VERSION/lib"; }

# kafka_probe asks the broker for cluster metadata and creates the project's topics (idempotent). A Java source file
# run by the JDK's launcher keeps this free of a second copy of Kafka's shell tools.
kafka_probe() { # seconds to keep trying
	local classes=$CACHE/kafka-$KAFKA_VERSION/probe
	if [[ ! -f $classes/Probe.class || $DEPS/kafka/Probe.java -nt $classes/Probe.class ]]; then
		mkdir -p "$classes"
		javac -nowarn -d "$classes" -cp "$(kafka_lib)/*" "$DEPS/kafka/Probe.java" || return 1
	fi
	java -Xmx128m -XX:TieredStopAtLevel=1 -Dlog4j.configuration="file:$DEPS/kafka/probe-log4j.properties" \
		-cp "$classes:$(kafka_lib)/*" Probe "$HOST:$KAFKA_PORT" "$1" shanhai.users shanhai.orders shanhai.payments
}

start_kafka() {
	local pid lib data=$VAR/kafka
	fetch_maven kafka "$KAFKA_VERSION"
	lib=$(kafka_lib)
	mkdir -p "$data"
	sed -e "s|@HOST@|$HOST|g" -e "s|@PORT@|$KAFKA_PORT|g" -e "s|@CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
		-e "s|@DATA@|$data/data|g" "$DEPS/kafka/server.properties" >"$data/server.properties"
	local jvm=(java -Xms512m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
		-Dlog4j.configuration="file:$DEPS/kafka/log4j.properties" -cp "$lib/*")
	# KRaft storage is formatted once, in its own JVM (the tool calls System.exit).
	if [[ ! -f $data/data/meta.properties ]]; then
		# random-uuid prints the id on stdout, where log4j.properties above also sends the JVM's INFO lines: keep the
		# id's line alone (a 22-character base64url Uuid), or the cluster id became a log line plus the id.
		if [[ ! -f $data/cluster.id ]]; then
			"${jvm[@]}" kafka.tools.StorageTool random-uuid 2>>"$LOG/kafka.log" | grep -E '^[A-Za-z0-9_-]{22}$' |
				tail -n 1 >"$data/cluster.id.new" && [[ -s $data/cluster.id.new ]] ||
				fail kafka "kafka-storage random-uuid printed no cluster id"
			mv "$data/cluster.id.new" "$data/cluster.id"
		fi
		"${jvm[@]}" kafka.tools.StorageTool format -t "$(cat "$data/cluster.id")" -c "$data/server.properties" \
			--ignore-formatted >>"$LOG/kafka.log" 2>&1 || fail kafka "kafka-storage format failed"
	fi
	pid=$(spawn kafka "${jvm[@]}" kafka.Kafka "$data/server.properties")
	wait_ready kafka "$pid"
	after_ready kafka
}

pulsar_setup() {
	# Tenant shanhai, namespace shanhai/events with broker-side deduplication (the bridge relies on it). All idempotent:
	# PUT on an existing tenant/namespace answers 409, which is fine.
	local a=http://$HOST:$PULSAR_HTTP_PORT/admin/v2 code
	code=$(curl -sS -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/json' \
		-d '{"adminRoles":[],"allowedClusters":["standalone"]}' "$a/tenants/shanhai") || true
	[[ $code == 204 || $code == 409 ]] || fail pulsar "creating tenant shanhai answered HTTP $code"
	code=$(curl -sS -o /dev/null -w '%{http_code}' -X PUT "$a/namespaces/shanhai/events") || true
	[[ $code == 204 || $code == 409 ]] || fail pulsar "creating namespace shanhai/events answered HTTP $code"
	code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' -d true \
		"$a/namespaces/shanhai/events/deduplication") || true
	[[ $code == 204 ]] || fail pulsar "enabling deduplication on shanhai/events answered HTTP $code"
	# The namespace is the archive: keep acknowledged messages (a week or 1 GB here) instead of trimming what no
	# subscription holds, which Pulsar otherwise does after a restart.
	code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
		-d '{"retentionTimeInMinutes":10080,"retentionSizeInMB":1024}' "$a/namespaces/shanhai/events/retention") || true
	[[ $code == 204 ]] || fail pulsar "setting retention on shanhai/events answered HTTP $code"
}

start_pulsar() {
	local pid home=$CACHE/pulsar-$PULSAR_VERSION data=$VAR/pulsar
	fetch_maven pulsar "$PULSAR_VERSION"
	# Fresh data per start: standalone's bookie and metadata store do not always agree after an unclean stop, and a test
	# server has nothing worth keeping. Run from its own directory because some paths stay relative to it.
	# `restart` (a clean TERM stop) keeps the data: a fault test's broker restart must not look like data loss.
	[[ -n ${KEEP_DATA:-} ]] || rm -rf "$data"
	mkdir -p "$data"
	# BookKeeper makes its ledger directories read-only past diskUsageThreshold (0.99 in deps/pulsar/standalone.conf)
	# of the whole filesystem, counted as 1 - available/size. Pulsar still answers its admin API then, so it looked
	# ready, and every write failed "Not enough non-faulty bookies available": say so before starting it.
	local size avail
	read -r size avail < <(df -Pk "$data" | awk 'NR == 2 { print $2, $4 }')
	if ((avail * 100 < size * 2)); then
		local why="the filesystem holding $data has $((avail / 1024)) MiB free of $((size / 1048576)) GiB;"
		fail pulsar "$why BookKeeper refuses writes past 99 % use. Free some space (the Go build cache: go clean -cache)"
	fi
	{
		cat "$home/conf/standalone.conf"
		echo
		sed -e "s|@HOST@|$HOST|g" -e "s|@PORT@|$PULSAR_PORT|g" -e "s|@HTTP_PORT@|$PULSAR_HTTP_PORT|g" \
			"$DEPS/pulsar/standalone.conf"
	} >"$data/standalone.conf"
	local flags
	mapfile -t flags < <(grep -v '^[[:space:]]*\(#\|$\)' "$DEPS/pulsar/jvm.options")
	pid=$(cd "$data" && spawn pulsar java "${flags[@]}" -Dlog4j.configurationFile="$DEPS/pulsar/log4j2.yaml" \
		-Dpulsar.log.dir="$LOG" -Dpulsar.config.file="$data/standalone.conf" -cp "$home/lib/*" \
		org.apache.pulsar.PulsarStandaloneStarter -c "$data/standalone.conf" -nfw -nss -a "$HOST" \
		--metadata-dir "$data/metadata" --bookkeeper-dir "$data/bookkeeper" --bookkeeper-port "$PULSAR_BOOKIE_PORT")
	wait_ready pulsar "$pid"
	after_ready pulsar
}

# our_pid prints the pid this checkout recorded for a server when that process still runs: the pid file names it and
# the process has an argument that is a path in the server's own state directory, $VAR/<server> (every start passes
# one), or works in it (redis rewrites its command line; the postmaster works in its data directory). A pid file
# outlives a reboot or a crash, and its number may by then be another program's, which is none of ours to wait for or
# to stop: one of another checkout's servers too, whose paths merely contain ours (/ci/work/main/var/deps/... holds
# /work/main/var/deps/), hence a whole argument's start and not a substring; and another of this checkout's servers,
# hence the server's own directory and not the state directory (a crashed PostgreSQL's postmaster.pid naming the
# number etcd has now made `down pg` have pg_ctl signal etcd, and `up pg` wait for etcd to answer as PostgreSQL).
our_pid() { # server
	local pidf pid arg dir=$VAR/$1 cwd
	pidf=$(pid_file "$1")
	[[ -f $pidf ]] || return 1
	pid=$(head -n 1 "$pidf")
	[[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
	cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) || true
	if [[ $cwd == "$dir" || $cwd == "$dir"/* ]]; then
		echo "$pid"
		return 0
	fi
	while IFS= read -r -d '' arg; do
		if [[ $arg == "$dir"/* ]]; then
			echo "$pid"
			return 0
		fi
	done 2>/dev/null <"/proc/$pid/cmdline"
	return 1
}

# ports lists a server's listening ports as VARIABLE=port, the variable that moves it.
ports() { # server
	case $1 in
	pg) echo "SHANHAI_PG_PORT=$PG_PORT" ;;
	redis) echo "SHANHAI_REDIS_PORT=$REDIS_PORT" ;;
	etcd) echo "SHANHAI_ETCD_PORT=$ETCD_PORT SHANHAI_ETCD_PEER_PORT=$ETCD_PEER_PORT" ;;
	nats) echo "SHANHAI_NATS_PORT=$NATS_PORT SHANHAI_NATS_MONITOR_PORT=$NATS_MONITOR_PORT" ;;
	kafka) echo "SHANHAI_KAFKA_PORT=$KAFKA_PORT SHANHAI_KAFKA_CONTROLLER_PORT=$KAFKA_CONTROLLER_PORT" ;;
	pulsar) echo "SHANHAI_PULSAR_PORT=$PULSAR_PORT SHANHAI_PULSAR_HTTP_PORT=$PULSAR_HTTP_PORT SHANHAI_PULSAR_BOOKIE_PORT=$PULSAR_BOOKIE_PORT" ;;
	esac
}

# taken_port prints the first of a server's ports something listens on, as VARIABLE=port.
taken_port() { # server
	local p
	for p in $(ports "$1"); do
		if port_open "${p#*=}"; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

# after_ready is what a server needs once it answers, before callers use it.
after_ready() { # server
	case $1 in
	pg)
		# The bootstrap superuser is shanhai; give it a database of its own name as well.
		if ! psql -h "$HOST" -p "$PG_PORT" -U shanhai -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='shanhai'" | grep -q 1; then
			psql -h "$HOST" -p "$PG_PORT" -U shanhai -d postgres -qc 'CREATE DATABASE shanhai' >>"$LOG/pg.log" 2>&1 ||
				fail pg "CREATE DATABASE shanhai failed"
		fi
		;;
	kafka) kafka_probe 60 >>"$LOG/kafka.log" 2>&1 || fail kafka "creating topics shanhai.users/orders/payments failed" ;;
	pulsar) pulsar_setup ;;
	esac
}

# up_one runs in a subshell per server so they start in parallel, each under its own lock.
up_one() { # server
	local s=$1 t0=$SECONDS pid taken
	exec 9>"$CACHE/locks/$s.lock"
	if ! flock -n 9; then
		say "$s: another deps.sh is starting it; waiting"
		flock 9
	fi
	if healthy "$s"; then
		[[ $s == pulsar ]] && pulsar_setup
		say "$s: already up at $(addr "$s"), reusing"
		return 0
	fi
	# One this checkout started and that is not answering yet (an `up` cut short by Ctrl-C, a slow start) is waited
	# for: starting it again wiped Pulsar's data under the running one, and the second copy, failing on the taken
	# port, replaced the pid file and then removed it, so that `down` no longer stopped the first.
	if pid=$(our_pid "$s"); then
		# One that never answers (a Pulsar stuck after an unclean stop) is not restarted behind the user's back: say how.
		say "$s: started from this checkout before (pid $pid) but not answering yet; waiting up to ${READY_TIMEOUT}s" \
			"(one that never answers: scripts/deps.sh down $s, then up again)"
		wait_ready "$s" "$pid"
		after_ready "$s"
		say "$s: up at $(addr "$s") ($((SECONDS - t0))s)"
		return 0
	fi
	# A port held by a process that does not answer as this server is said at once: starting it anyway failed on the
	# port, after the whole READY_TIMEOUT for a daemonizing redis-server, with a message that did not name the port.
	# A few seconds' grace first, for a server of someone else's just finishing its start or answering slowly.
	if taken=$(taken_port "$s"); then
		local grace=$((SECONDS + 10))
		until healthy "$s"; do
			((SECONDS < grace)) || fail "$s" "port ${taken#*=} is taken by a process that does not answer as $s (another \
program, or a $s not started from this checkout that is still starting or broken): find it with \
\`ss -ltnp 'sport = :${taken#*=}'\`, or run this server on another port: ${taken%%=*}=<port> scripts/deps.sh up $s"
			sleep 1
		done
		[[ $s == pulsar ]] && pulsar_setup
		say "$s: already up at $(addr "$s"), reusing"
		return 0
	fi
	"start_$s"
	say "$s: up at $(addr "$s") ($((SECONDS - t0))s)"
}

addr() {
	case $1 in
	pg) echo "$HOST:$PG_PORT" ;;
	redis) echo "$HOST:$REDIS_PORT" ;;
	etcd) echo "$HOST:$ETCD_PORT" ;;
	nats) echo "$HOST:$NATS_PORT (monitor $NATS_MONITOR_PORT)" ;;
	kafka) echo "$HOST:$KAFKA_PORT (controller $KAFKA_CONTROLLER_PORT)" ;;
	pulsar) echo "$HOST:$PULSAR_PORT (admin http $PULSAR_HTTP_PORT)" ;;
	esac
}

# install_packages installs the Debian packages the chosen servers need before any of them starts, so parallel starts
# never race on apt.
install_packages() {
	local s
	for s in "$@"; do
		healthy "$s" && continue
		case $s in
		pg) pg_bin >/dev/null || need_apt postgresql /usr/lib/postgresql/15/bin/initdb ;;
		redis) need_apt redis-server redis-server ;;
		etcd) need_apt etcd-server etcd ;;
		esac
	done
	command -v pg_isready >/dev/null || need_apt postgresql-client pg_isready
	command -v redis-cli >/dev/null || need_apt redis-tools redis-cli
	command -v curl >/dev/null || need_apt curl curl
}

# up_interrupted ends the starts still under way when `up` is interrupted (Ctrl-C, TERM, a closed terminal), each
# with what it runs (flock, a fetch, pg_ctl, the readiness polls), and says which servers it leaves running: those
# already launched, recorded for `down` (each records itself as it starts: spawn, redis' and PostgreSQL's own pid
# files). Before, a signal to the script alone (`kill <pid>`, a supervisor stopping the step) ended it and not its starts,
# background jobs that went on: one waiting for its server's lock started that server after the script had gone.
up_interrupted() { # exit status, server...
	trap '' INT TERM HUP # a second Ctrl-C must not cut this short
	local rc=$1 job s pid kept=()
	shift
	# CONT: a stopped process gets TERM only once continued, and `wait` waited for a stopped start for good.
	for job in $(jobs -p); do kill -TERM -- "-$job" 2>/dev/null && kill -CONT -- "-$job" 2>/dev/null || true; done
	wait || true
	for s in "$@"; do
		if pid=$(our_pid "$s"); then kept+=("$s (pid $pid)"); fi
	done
	if ((${#kept[@]})); then
		say "interrupted: starting nothing more; left running, started from this checkout: ${kept[*]}" \
			"(scripts/deps.sh down stops them; up again waits for them)"
	else
		say "interrupted: starting nothing more; no server started from this checkout is running"
	fi
	exit "$rc"
}

cmd_up() {
	local s pids=() names=("$@") failed=() t0=$SECONDS
	install_packages "$@"
	trap 'up_interrupted 130 "${names[@]}"' INT
	trap 'up_interrupted 143 "${names[@]}"' TERM
	trap 'up_interrupted 129 "${names[@]}"' HUP
	for s in "$@"; do
		# Each start is a job in a process group of its own (job control on for the fork only), so that an interrupt
		# can end it with everything it runs, and a Ctrl-C at the terminal reaches only this shell, which does that.
		# A process group that is not the terminal's foreground one is stopped by the terminal when it writes there
		# under `stty tostop`, changes the terminal's settings or reads from it: the start stopped at its first
		# message and `up` waited for it for good. It ignores those stops (its writes then go through) and reads
		# nothing from the terminal.
		set -m
		(
			trap '' TTIN TTOU
			up_one "$s"
		) </dev/null &
		set +m
		pids+=($!)
	done
	local i
	for i in "${!pids[@]}"; do
		wait "${pids[$i]}" || failed+=("${names[$i]}")
	done
	trap - INT TERM HUP
	if ((${#failed[@]})); then
		die "not started: ${failed[*]} (logs in $LOG/)"
	fi
	say "all up in $((SECONDS - t0))s: ${*}"
}

stop_pid() { # server
	local s=$1 pidf pid
	pidf=$(pid_file "$s")
	# pg.pid, a copy of postmaster.pid that an older deps.sh made, is left from before: postmaster.pid decides.
	[[ $s == pg ]] && rm -f "$VAR/pg.pid"
	[[ -f $pidf ]] || return 0
	if ! pid=$(our_pid "$s"); then
		# Gone, or (after a reboot) its number is another program's now, which was sent TERM and then KILL. A stale
		# postmaster.pid naming a live program would also stop PostgreSQL's next start ("is another postmaster
		# running?"): our_pid found no process working in this checkout's data directory, so it is no postmaster's.
		say "$s: pid $(head -n 1 "$pidf") in $pidf is not this checkout's $s any more; removing the stale pid file"
		rm -f "$pidf"
		return 0
	fi
	if [[ $s == pg ]]; then
		# pg_ctl stops the postmaster cleanly through postmaster.pid: checked by our_pid above, because after a
		# reboot that file may be stale, and pg_ctl signals whatever process has its number.
		local bin runas=()
		bin=$(pg_bin)
		[[ $(id -u) == 0 ]] && runas=(runuser -u postgres --)
		"${runas[@]}" "$bin/pg_ctl" -D "$VAR/pg" -m fast -w stop >>"$LOG/pg.log" 2>&1 || true
	else
		kill -TERM "$pid" 2>/dev/null || true
		local i
		for i in $(seq 1 60); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.5
		done
		if kill -0 "$pid" 2>/dev/null; then
			say "$s: pid $pid ignored TERM for 30s, killing"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$pidf"
	say "$s: stopped"
}

cmd_down() {
	local s
	for s in "$@"; do
		(
			exec 9>"$CACHE/locks/$s.lock"
			flock 9
			if [[ -f $(pid_file "$s") ]]; then stop_pid "$s"; else say "$s: not started from this checkout, left alone"; fi
		)
	done
}

# cmd_restart stops a server this checkout started (TERM, clean) and starts it again on the same data, for fault tests
# (the bridge's restarts Pulsar). Only pulsar: the other servers' start functions were not written to reuse data.
cmd_restart() {
	local s
	for s in "$@"; do
		[[ $s == pulsar ]] || die "restart supports pulsar only"
		(
			exec 9>"$CACHE/locks/$s.lock"
			flock 9
			[[ -f $(pid_file "$s") ]] || fail "$s" "not started from this checkout; restart leaves other people's servers alone"
			stop_pid "$s"
			KEEP_DATA=1 "start_$s"
			say "$s: restarted at $(addr "$s")"
		)
	done
}

cmd_status() {
	local s state rc=0 own pidf pid
	for s in "$@"; do
		own=
		pidf=$(pid_file "$s")
		if pid=$(our_pid "$s"); then
			own="pid $pid, started here"
		elif [[ -f $pidf ]]; then
			# A pid file whose process is gone (a crash, a reboot) or is another program now: not ours to claim.
			own="stale pid file $pidf: pid $(head -n 1 "$pidf") is gone or not this checkout's $s; scripts/deps.sh down $s removes it"
		fi
		if healthy "$s"; then state=up; else
			state=down
			rc=3
		fi
		printf '%-7s %-5s %s%s\n' "$s" "$state" "$(addr "$s")" "${own:+ ($own)}"
	done
	return $rc
}

cmd_tools() {
	fetch_promtool
}

cmd_env() {
	cat <<EOF
export DATABASE_URL='postgres://shanhai@$HOST:$PG_PORT/shanhai?sslmode=disable'
export REDIS_URL='redis://$HOST:$REDIS_PORT/0'
export ETCD_ENDPOINTS='$HOST:$ETCD_PORT'
export NATS_URL='nats://$HOST:$NATS_PORT'
export KAFKA_BROKERS='$HOST:$KAFKA_PORT'
export PULSAR_URL='pulsar://$HOST:$PULSAR_PORT'
export PULSAR_ADMIN_URL='http://$HOST:$PULSAR_HTTP_PORT'
EOF
}

main() {
	local cmd=${1:-}
	[[ $# -gt 0 ]] && shift
	SERVERS=("$@")
	((${#SERVERS[@]})) || SERVERS=("${ALL[@]}")
	local s
	for s in "${SERVERS[@]}"; do
		[[ " ${ALL[*]} " == *" $s "* ]] || die "unknown server '$s' (known: ${ALL[*]})"
	done
	case $cmd in
	up | down | restart | tools) mkdir -p "$LOG" "$CACHE/bin" "$CACHE/locks" ;;
	status | env) ;;
	*)
		sed -n '2,13s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
		exit 2
		;;
	esac
	"cmd_$cmd" "${SERVERS[@]}"
}

main "$@"
