#!/bin/sh
# shadow-rtt.sh — shadow round trip with a connected fleet: starts a real
# `outpost hub` on free loopback ports with an empty data directory, then
# `outpost sim` connects N devices (each its own MQTT connection and
# credentials) and measures round trips: desired set through the REST API →
# the device's report of the same value accepted by the hub. Prints the sim's
# summary and the hub's peak RSS and RSS per connected device. The simulator
# runs on the same machine and competes with the hub for its cores.
#
#   bench/shadow-rtt.sh                      # 1,000 devices, 2,000 round trips
#   bench/shadow-rtt.sh 10000 5000 1         # devices, round trips, concurrency
#   RATE=1 bench/shadow-rtt.sh 10000 5000 4  # devices also send 1 point/s each
set -eu
cd "$(dirname "$0")/.."
devices=${1:-1000}
probes=${2:-2000}
conc=${3:-1}
rate=${RATE:-0}

. bench/hub-lib.sh
rss_idle=$(rss_kib "$hub")

"$o" sim --devices "$devices" --rate "$rate" --probes "$probes" --probe-concurrency "$conc" \
	--connect-rate 1000 --duration 10s >"$work/sim.out" 2>"$work/sim.log" &
sim=$!
extra_pids=$sim
# Sample the hub's RSS while the fleet is connected.
rss_fleet=0
while kill -0 "$sim" 2>/dev/null; do
	r=$(rss_kib "$hub")
	[ "$r" -gt "$rss_fleet" ] && rss_fleet=$r
	sleep 1
done
wait "$sim" || { cat "$work/sim.out"; tail -5 "$work/sim.log"; exit 1; }
echo "fleet: $devices devices, $probes round trips, $conc in flight, rate $rate points/s per device"
cat "$work/sim.out"
echo "hub RSS: idle $((rss_idle / 1024)) MiB, with the fleet connected (peak) $((rss_fleet / 1024)) MiB," \
	"$(((rss_fleet - rss_idle) / devices)) KiB per device"
