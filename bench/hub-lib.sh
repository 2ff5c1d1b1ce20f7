# hub-lib.sh — sourced by the bench scripts that need a real hub: builds
# `outpost` into $work, starts `outpost hub` on free loopback ports (gRPC
# too, so that several can run at once) with an empty data directory, waits
# for its HTTP listener and logs the CLI in. Sets work, hub (PID), http, o
# (the outpost binary) and OUTPOST_CONFIG_DIR; stops the hub and removes
# $work on exit (also killing $extra_pids). It sources bench/proc-lib.sh
# (port, cpu_ticks, rss_kib, wait_port).
. bench/proc-lib.sh
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d)
extra_pids=
hub=
trap 'kill $extra_pids $hub 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/outpost" ./cmd/outpost
o="$work/outpost"

http=127.0.0.1:$(port)
mqtt=127.0.0.1:$(port)
"$o" hub --data "$work/hub" --http "$http" --mqtt "$mqtt" --grpc 127.0.0.1:0 --log-level warn 2>"$work/hub.log" &
hub=$!
for _ in $(seq 50); do [ -s "$work/hub/admin-password" ] && break; sleep 0.1; done
# The password file is written before the HTTP listener is up.
wait_port "$http" "$hub" "$work/hub.log" || exit 1
export OUTPOST_CONFIG_DIR="$work/cfg"
"$o" login --hub "http://$http" --user admin --password-stdin <"$work/hub/admin-password" >/dev/null
