#!/bin/sh
# rollout.sh — time for a staged OTA rollout across a simulated fleet:
# starts a real `outpost hub` on free loopback ports, initialises its TUF
# keys, publishes a small signed file artifact, connects N simulated devices
# with `outpost sim` (each its own MQTT connection; each takes a job in
# --job-duration and reports SUCCEEDED), then runs
# `outpost rollouts create --waves 1%,10%,50%,100% --soak 0s` and prints the
# time from create to completed. The simulator shares the machine's cores.
#
#   bench/rollout.sh            # 1,000 devices
#   bench/rollout.sh 5000       # devices
set -eu
cd "$(dirname "$0")/.."
devices=${1:-1000}

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d)
trap 'kill "$sim" "$hub" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
sim=
go build -o "$work/outpost" ./cmd/outpost

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=127.0.0.1:$(port)
mqtt=127.0.0.1:$(port)
"$work/outpost" hub --data "$work/hub" --http "$http" --mqtt "$mqtt" --log-level warn 2>"$work/hub.log" &
hub=$!
for _ in $(seq 50); do [ -s "$work/hub/admin-password" ] && break; sleep 0.1; done
export OUTPOST_CONFIG_DIR="$work/cfg"
o="$work/outpost"
$o login --hub "http://$http" --user admin --password-stdin <"$work/hub/admin-password" >/dev/null
$o keys init --root-key "$work/root.key" >/dev/null
head -c 65536 /dev/urandom >"$work/model.bin"
$o artifacts publish "$work/model.bin" --name model --version 1.0.0 --type file --platform any >/dev/null

$o sim --devices "$devices" --rate 0 --connect-rate 1000 --job-duration 100ms --duration 30m 2>"$work/sim.log" >/dev/null &
sim=$!
until grep -q "^connected $devices/$devices devices" "$work/sim.log"; do
	kill -0 "$sim" 2>/dev/null || { tail -5 "$work/sim.log"; exit 1; }
	sleep 0.5
done

start=$(date +%s.%N)
$o rollouts create --artifact model@1.0.0 --waves 1%,10%,50%,100% --soak 0s --id bench >/dev/null
while :; do
	status=$($o rollouts show bench -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
	[ "$status" = running ] || break
	sleep 0.2
done
end=$(date +%s.%N)
echo "rollout to $devices simulated devices in 4 waves (1%, 10%, 50%, 100%), soak 0s, 100 ms per device job:"
echo "status $status after $(python3 -c "print(f'{$end - $start:.1f}')") s (the hub advances rollouts every 2 s)"
$o rollouts show bench | sed -n '/^WAVE/,$p'
