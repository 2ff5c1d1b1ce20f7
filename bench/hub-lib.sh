# hub-lib.sh — sourced by the bench scripts that need a real hub: builds
# `outpost` into $work, starts `outpost hub` on free loopback ports with an
# empty data directory and logs the CLI in. Sets work, hub (PID), http, o
# (the outpost binary) and OUTPOST_CONFIG_DIR; stops the hub and removes
# $work on exit (also killing $extra_pids).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d)
extra_pids=
hub=
trap 'kill $extra_pids $hub 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/outpost" ./cmd/outpost
o="$work/outpost"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=127.0.0.1:$(port)
mqtt=127.0.0.1:$(port)
"$o" hub --data "$work/hub" --http "$http" --mqtt "$mqtt" --log-level warn 2>"$work/hub.log" &
hub=$!
for _ in $(seq 50); do [ -s "$work/hub/admin-password" ] && break; sleep 0.1; done
export OUTPOST_CONFIG_DIR="$work/cfg"
"$o" login --hub "http://$http" --user admin --password-stdin <"$work/hub/admin-password" >/dev/null
