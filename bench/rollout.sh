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

. bench/hub-lib.sh
$o keys init --root-key "$work/root.key" >/dev/null
head -c 65536 /dev/urandom >"$work/model.bin"
$o artifacts publish "$work/model.bin" --name model --version 1.0.0 --type file --platform any >/dev/null

$o sim --devices "$devices" --rate 0 --connect-rate 1000 --job-duration 100ms --duration 30m 2>"$work/sim.log" >/dev/null &
sim=$!
extra_pids=$sim
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
