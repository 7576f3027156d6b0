#!/usr/bin/env bash
# seaweedfs.sh build|path|start|stop|env|status — a real S3 server (SeaweedFS, Apache-2.0) for the S3
# artifact store's tests.
#
# build  builds `weed` from the Go module proxy once, cached outside the repository under
#        $GPUJOBS_CACHE/seaweedfs/VERSION/weed (6-9 min on 2 cores the first time, a no-op after).
# path   builds it when missing and prints that path (the cluster test runs it for the
#        compose file's seaweedfs service).
# start  starts one `weed server` with the S3 gateway on free loopback ports, its data in
#        run/NAME/, and an S3 key pair generated for this instance (never anonymous). Idempotent:
#        an instance this script started and that still answers is left running.
# env    prints the shell exports the tests read (GPUJOBS_S3_ENDPOINT, GPUJOBS_S3_REGION,
#        GPUJOBS_S3_TEST_BUCKET, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY): eval "$(... env)".
# stop   stops the instance start started (the process group of its recorded pid), and nothing
#        else; its data (test data only) goes with it.
#
# NAME is $SEAWEEDFS_NAME, seaweedfs by default; make test uses its own (seaweedfs-test), so it
# neither reuses nor stops one a developer started by hand.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# The SeaweedFS revision the tests run against; its go.mod has replace directives, so it is built
# inside its own module rather than with `go install`.
VERSION=${SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}
CACHE=${GPUJOBS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gpujobs}
WEED=$CACHE/seaweedfs/$VERSION/weed
NAME=${SEAWEEDFS_NAME:-seaweedfs}
DIR=$RUN_DIR/$NAME
ENV_FILE=$DIR/s3.env
PORTS_FILE=$DIR/ports
REGION=us-east-1
BUCKET=gpujobs-test

build() {
	[ -x "$WEED" ] && return 0
	command -v go >/dev/null || die "go is needed to build SeaweedFS"
	log "building SeaweedFS $VERSION (first time only: a few minutes; cached in $(dirname "$WEED"))"
	local mod=github.com/seaweedfs/seaweedfs@$VERSION json src tmp
	# go mod download -json exits non-zero with the reason in its "Error" field, not on stderr
	json=$(go mod download -json "$mod") ||
		die "go mod download $mod failed: $(sed -n 's/^[[:space:]]*"Error": "\(.*\)"$/\1/p' <<<"$json")"
	src=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$json")
	[ -n "$src" ] && [ -d "$src" ] || die "go mod download $mod gave no source directory"
	mkdir -p "$(dirname "$WEED")"
	tmp=$(mktemp -d "$(dirname "$WEED")/build.XXXXXX")
	trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
	cp -r "$src" "$tmp/src"
	chmod -R u+w "$tmp/src"
	(cd "$tmp/src" && nice -n 10 go build -buildvcs=false -trimpath -ldflags '-s -w' -o "$tmp/weed" ./weed) ||
		die "building SeaweedFS failed"
	mv "$tmp/weed" "$WEED" # a rename: a build killed half-way leaves no binary that looks done
	chmod -R u+w "$tmp" 2>/dev/null
	rm -rf "$tmp"
	trap - EXIT
}

# free_port prints a loopback TCP port nobody listens on, such that port+10000 (the gRPC port
# start gives each of SeaweedFS's servers) is free as well.
free_port() {
	python3 - <<'PY'
import socket, random
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        s.close()
for _ in range(1000):
    p = random.randint(20000, 45000)
    if free(p) and free(p + 10000):
        print(p)
        break
PY
}

setting() { sed -n "s/^$1=//p" "$ENV_FILE" 2>/dev/null; }

answers() { # the S3 gateway answers HTTP (any status: 403 to an unsigned request is an answer)
	[ -f "$ENV_FILE" ] && curl -s -o /dev/null -m 2 "$(setting GPUJOBS_S3_ENDPOINT)/" 2>/dev/null
}

start() {
	apt_install curl python3 openssl
	build
	if [ -f "$RUN_DIR/$NAME.pid" ] && running "$(cat "$RUN_DIR/$NAME.pid")" && answers; then
		log "SeaweedFS already running ($(setting GPUJOBS_S3_ENDPOINT))"
		return 0
	fi
	stop_server
	mkdir -p "$DIR/data"
	chmod 700 "$DIR"
	local master volume filer s3 access secret
	master=$(free_port) volume=$(free_port) filer=$(free_port) s3=$(free_port)
	[ -n "$master" ] && [ -n "$volume" ] && [ -n "$filer" ] && [ -n "$s3" ] || die "no free port for SeaweedFS"
	echo "$master $volume $filer $s3" >"$PORTS_FILE"
	# A key pair of this instance's own: once one identity is configured the gateway refuses
	# anonymous requests, so the tests sign theirs as a real deployment does.
	access=GJ$(openssl rand -hex 9 | tr a-f A-F)
	secret=$(openssl rand -base64 30 | tr -d '/+=\n')
	(
		umask 077
		cat >"$DIR/s3.json" <<JSON
{"identities": [{"name": "gpujobs-test",
  "credentials": [{"accessKey": "$access", "secretKey": "$secret"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
		cat >"$ENV_FILE" <<ENV
GPUJOBS_S3_ENDPOINT=http://127.0.0.1:$s3
GPUJOBS_S3_REGION=$REGION
GPUJOBS_S3_TEST_BUCKET=$BUCKET
AWS_ACCESS_KEY_ID=$access
AWS_SECRET_ACCESS_KEY=$secret
ENV
	)
	log "starting SeaweedFS (S3 on 127.0.0.1:$s3, data in $DIR/data)"
	# setsid: its own process group, so stop ends the server and whatever it forked, and only
	# that. No telemetry, and the Iceberg and Lance listeners (fixed ports) off.
	setsid "$WEED" server -dir="$DIR/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
		-master.port="$master" -master.port.grpc=$((master + 10000)) -master.telemetry=false \
		-master.volumeSizeLimitMB=256 -volume.max=0 \
		-volume.port="$volume" -volume.port.grpc=$((volume + 10000)) \
		-filer -filer.port="$filer" -filer.port.grpc=$((filer + 10000)) -filer.localSocket="$DIR/filer.sock" \
		-s3 -s3.port="$s3" -s3.port.grpc=$((s3 + 10000)) -s3.config="$DIR/s3.json" -s3.localSocket="$DIR/s3.sock" \
		-s3.port.iceberg=0 -s3.port.lance=0 \
		</dev/null >"$DIR/weed.log" 2>&1 &
	echo $! >"$RUN_DIR/$NAME.pid"
	# The gateway listens before the master has elected itself and a volume has registered; only
	# a signed write that succeeds says the store is usable, so wait for one.
	local deadline=$((SECONDS + 120))
	until probe; do
		running "$(cat "$RUN_DIR/$NAME.pid")" || die "SeaweedFS exited: see $DIR/weed.log"
		[ $SECONDS -lt $deadline ] || die "SeaweedFS did not accept an S3 write within 120 s: see $DIR/weed.log"
		sleep 0.5
	done
}

# probe creates the test bucket (an error when it exists is fine) and writes and deletes one
# object, signed with the instance's key (curl's --aws-sigv4; S3 wants the payload's sha256).
probe() {
	local endpoint access secret empty ready
	endpoint=$(setting GPUJOBS_S3_ENDPOINT)
	access=$(setting AWS_ACCESS_KEY_ID)
	secret=$(setting AWS_SECRET_ACCESS_KEY)
	wait_tcp 127.0.0.1 "${endpoint##*:}" 1 || return 1
	empty=$(printf '' | sha256sum | cut -d' ' -f1)
	ready=$(printf ready | sha256sum | cut -d' ' -f1)
	s3() { # s3 PAYLOAD_SHA256 CURL_ARGS... prints the HTTP status
		local h=$1
		shift
		curl --aws-sigv4 "aws:amz:$REGION:s3" --user "$access:$secret" -H "x-amz-content-sha256: $h" \
			-s -o /dev/null -m 5 -w '%{http_code}' "$@" 2>/dev/null
	}
	case $(s3 "$empty" -X PUT "$endpoint/$BUCKET") in 200 | 409) ;; *) return 1 ;; esac
	[ "$(s3 "$ready" -X PUT --data-binary ready "$endpoint/$BUCKET/.probe")" = 200 ] || return 1
	case $(s3 "$empty" -X DELETE "$endpoint/$BUCKET/.probe") in 200 | 204) ;; *) return 1 ;; esac
}

# running PID: the process exists and has not exited (an exited one waits as a zombie until
# whoever inherited it reaps it, and kill -0 still reaches it).
running() {
	local state
	state=$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

stop_server() {
	local f=$RUN_DIR/$NAME.pid pid
	[ -f "$f" ] || return 0
	pid=$(cat "$f")
	if running "$pid"; then
		log "stopping SeaweedFS (pid $pid)"
		kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
		# weed's own shutdown can hang (its filer keeps redialing the volume server that already
		# stopped); the data is test data, so after 5 s it is killed.
		local deadline=$((SECONDS + 5))
		while running "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
		kill -KILL -- "-$pid" 2>/dev/null || true
	fi
	rm -f "$f"
	# SeaweedFS puts its local gRPC sockets in /tmp, named by port, and may leave them.
	if [ -f "$PORTS_FILE" ]; then
		local p
		for p in $(cat "$PORTS_FILE"); do
			rm -f /tmp/seaweedfs-{master,volume,filer,s3}-grpc-$((p + 10000)).sock
		done
	fi
}

case "${1:-}" in
build) build ;;
path)
	build
	echo "$WEED"
	;;
start) start ;;
stop)
	stop_server
	rm -rf "$DIR" # test data only: the next start begins empty, with a new key pair
	;;
env)
	[ -f "$ENV_FILE" ] && pid_alive "$NAME" || die "SeaweedFS ($NAME) is not running: $0 start"
	sed 's/^/export /' "$ENV_FILE"
	;;
status)
	if pid_alive "$NAME" && answers; then
		echo "SeaweedFS running: $(setting GPUJOBS_S3_ENDPOINT)"
	else
		echo "SeaweedFS not running"
		exit 1
	fi
	;;
*) die "usage: $0 build|path|start|stop|env|status" ;;
esac
