#!/bin/sh
# broker.sh — the hub's embedded MQTT broker against Debian's mosquitto under
# the same `outpost sim` telemetry load, in one run on one machine.
#
# It builds `outpost`, starts a real `outpost hub` on free loopback ports with
# an empty data directory (bench/hub-lib.sh, as the other hub benchmarks) and
# mosquitto on another free loopback port with a throwaway config (anonymous
# access, so it accepts the sim's per-device credentials without checking
# them; no persistence; TCP_NODELAY on, as Go sets it on the hub's sockets).
# Then it runs the same fleet twice, one run after the other:
#
#   1. hub:       `outpost sim … --qos 1` against the hub, telemetry to the
#                 embedded broker;
#   2. mosquitto: the same with `--mqtt mqtt://127.0.0.1:PORT`: the hub still
#                 enrolls the devices, but they connect and publish to
#                 mosquitto.
#
# For each run it reports the sim's acknowledged points/s and publish latency
# (publish call → PUBACK, from the sim's histogram), and the broker process's
# CPU (utime+stime from /proc/PID/stat) per 10,000 acknowledged points and
# its peak RSS, both sampled over the measured window only (from the sim's
# first to its last once-per-second progress line, so enrollment and
# connecting are left out), then the ratios hub / mosquitto.
#
# This is NOT a like-for-like comparison of two brokers. The embedded broker
# acknowledges a QoS 1 telemetry batch only after the hub has decoded it and
# committed its points to SQLite (WAL, synchronous=FULL, one writer), so its PUBACK means
# "durably stored" and its CPU and RSS include the decode, the store and the
# rest of the hub (REST API, shadows, rollouts, device registry). Mosquitto
# only routes the publish (nobody subscribes to telemetry here, so it goes
# nowhere) and acknowledges it from memory: its numbers are what an MQTT hop
# costs with no storage behind it, and a deployment that put mosquitto in
# front of a store would add an ingest consumer and the store on top. The
# ratios show the price of acking after the commit, not which broker is
# faster at MQTT. Other caveats: the simulator runs on the same machine and
# competes with the broker for its cores; each device has at most one
# publish in flight, so throughput comes from many devices, not from
# pipelining; the runs are sequential, so load from other processes can
# differ between them (on a shared 2-core machine the hub's publish p50 was
# 4.3 ms in one default run and 9.5 ms in the next).
#
#   bench/broker.sh                              # 200 devices × 100 points/s (20k points/s), 1s batches, 15s per broker
#   bench/broker.sh --devices 500 --rate 20      # flags: --devices --rate --publish-every --duration --qos --mosquitto
#   DEVICES=1000 RATE=50 DURATION=10s bench/broker.sh   # the same as environment variables
#
# Saturating variant: offer more than the hub can commit on the machine, e.g.
#   bench/broker.sh --devices 1000 --rate 200 --duration 10s   # 200k points/s offered
# On a 2-core machine (load from others included) the hub levelled off at
# about 130k points/s acknowledged using one core, with publish p50 ~4 s, p99
# ~5 s and peak RSS ~335 MiB (batches queue in front of the single SQLite
# writer), while mosquitto acknowledged all 200k points/s with p99 ~230 ms
# and 5 % of a core. A device whose publish is slow sends bigger batches
# next time (its points accrue with time, up to 5,000 a batch), so past
# saturation the hub is fed fewer, larger batches; points fail only once a
# publish exceeds the sim's 10 s timeout. Past that point the simulator, not
# mosquitto, is what limits mosquitto's side.
set -eu
cd "$(dirname "$0")/.."

devices=${DEVICES:-200}
rate=${RATE:-100}
every=${PUBLISH_EVERY:-1s}
duration=${DURATION:-15s}
qos=${QOS:-1}
mosquitto=${MOSQUITTO:-/usr/sbin/mosquitto}
while [ $# -gt 0 ]; do
	case $1 in
	--devices) devices=$2 ;;
	--rate) rate=$2 ;;
	--publish-every) every=$2 ;;
	--duration) duration=$2 ;;
	--qos) qos=$2 ;;
	--mosquitto) mosquitto=$2 ;;
	-h | --help)
		sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "broker.sh: unknown flag $1 (see --help)" >&2
		exit 2
		;;
	esac
	[ $# -ge 2 ] || { echo "broker.sh: $1 needs a value" >&2; exit 2; }
	shift 2
done
if [ "$qos" = 0 ]; then
	echo "broker.sh: --qos 0 has nothing acknowledged to time; use 1 or 2" >&2
	exit 2
fi
[ -x "$mosquitto" ] || { echo "broker.sh: no mosquitto at $mosquitto (apt-get install mosquitto, or --mosquitto PATH)" >&2; exit 1; }

# An interrupt or TERM ends the script through exit, so that the EXIT trap
# below (first hub-lib.sh's, then ours) stops everything it started.
trap 'exit 130' INT
trap 'exit 143' TERM
. bench/hub-lib.sh
mosq=
trap 'kill $extra_pids $mosq $hub 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

mport=$(port)
cat >"$work/mosquitto.conf" <<EOF
listener $mport 127.0.0.1
allow_anonymous true
persistence false
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
user $(id -un)
EOF
"$mosquitto" -c "$work/mosquitto.conf" 2>"$work/mosquitto.log" &
mosq=$!
wait_port "127.0.0.1:$mport" "$mosq" "$work/mosquitto.log" || { echo "mosquitto did not start" >&2; exit 1; }

tck=$(getconf CLK_TCK)

# measure NAME PID PREFIX [sim flags…] runs the fleet against the broker
# process PID and writes $work/NAME.env: the broker's CPU ticks, wall time and
# acknowledged points between the sim's first and last progress line, and
# its idle and peak RSS.
measure() {
	name=$1 pid=$2 prefix=$3
	shift 3
	log=$work/$name.log
	rss_idle=$(rss_kib "$pid")
	"$o" sim -o json --devices "$devices" --rate "$rate" --publish-every "$every" --qos "$qos" \
		--duration "$duration" --prefix "$prefix" --connect-rate 1000 "$@" >"$work/$name.json" 2>"$log" &
	sim=$!
	extra_pids=$sim
	lines=0 c0= t0= a0= c1= t1= a1= rss_peak=0
	while kill -0 "$sim" 2>/dev/null; do
		n=$(grep -c 'points/s acknowledged' "$log" || true)
		if [ "$n" -gt "$lines" ]; then
			c=$(cpu_ticks "$pid") t=$(date +%s.%N)
			a=$(grep 'points/s acknowledged' "$log" | tail -1 | sed 's/.*(\([0-9]*\) in all).*/\1/')
			[ -n "$c0" ] || c0=$c t0=$t a0=$a
			c1=$c t1=$t a1=$a lines=$n
		fi
		if [ -n "$c0" ]; then
			r=$(rss_kib "$pid")
			[ "$r" -gt "$rss_peak" ] && rss_peak=$r
		fi
		sleep 0.2
	done
	if ! wait "$sim"; then
		echo "outpost sim against $name failed:" >&2
		tail -5 "$log" >&2
		exit 1
	fi
	extra_pids=
	if [ "$lines" -lt 3 ]; then
		echo "$name: only $lines progress lines; run longer (--duration)" >&2
		exit 1
	fi
	printf 'ticks=%s\nwall=%s\npoints=%s\nrss_idle=%s\nrss_peak=%s\n' \
		"$((c1 - c0))" "$(echo "$t1 $t0" | awk '{ print $1 - $2 }')" "$((a1 - a0))" "$rss_idle" "$rss_peak" >"$work/$name.env"
}

echo "fleet: $devices devices × $rate points/s, a batch every $every, QoS $qos, $duration per broker" \
	"($(awk "BEGIN { print $devices * $rate }") points/s offered); $(nproc) cores; $("$mosquitto" -h 2>&1 | head -1)"
echo "running against the hub's embedded broker …"
measure hub "$hub" hub
echo "running against mosquitto …"
measure mosquitto "$mosq" mosq --mqtt "mqtt://127.0.0.1:$mport"

python3 - "$work" "$tck" <<'EOF'
import json, sys
work, tck = sys.argv[1], int(sys.argv[2])
rows = {}
for name in ("hub", "mosquitto"):
    r = json.load(open(f"{work}/{name}.json"))
    env = dict(l.strip().split("=", 1) for l in open(f"{work}/{name}.env"))
    t, p = r["telemetry"], r.get("publish") or {}
    cpu_s = int(env["ticks"]) / tck
    pts = int(env["points"])
    rows[name] = {
        "connected": f'{r["connected"]}/{r["devices"]}',
        "points acked": t["points_acked"],
        "points failed": t["points_failed"],
        "acked points/s": t["points_acked"] / (t["elapsed_ns"] / 1e9),
        "publish p50 ms": p.get("p50_ns", 0) / 1e6,
        "publish p90 ms": p.get("p90_ns", 0) / 1e6,
        "publish p99 ms": p.get("p99_ns", 0) / 1e6,
        "publish max ms": p.get("max_ns", 0) / 1e6,
        "publish mean ms": p.get("mean_ns", 0) / 1e6,
        "broker CPU cores": cpu_s / float(env["wall"]),
        "CPU s / 10k points": cpu_s / pts * 1e4 if pts else float("nan"),
        "RSS idle MiB": int(env["rss_idle"]) / 1024,
        "RSS peak MiB": int(env["rss_peak"]) / 1024,
    }
ratio = {"acked points/s", "publish p50 ms", "publish p99 ms", "CPU s / 10k points", "RSS peak MiB"}
def fmt(k, v):
    if isinstance(v, str) or isinstance(v, int):
        return f"{v:,}" if isinstance(v, int) else v
    digits = 3 if "CPU s" in k else 2 if (" ms" in k or "cores" in k) else 1 if "MiB" in k else 0
    return f"{v:,.{digits}f}"
print(f'{"":22}{"hub (ack after commit)":>24}{"mosquitto (ack from memory)":>30}{"hub / mosquitto":>18}')
for k in rows["hub"]:
    h, m = rows["hub"][k], rows["mosquitto"][k]
    q = f"{h / m:.2f}×" if k in ratio and m else ""
    print(f"{k:22}{fmt(k, h):>24}{fmt(k, m):>30}{q:>18}")
for name, r in rows.items():
    if r["points failed"] or r["connected"].split("/")[0] != r["connected"].split("/")[1]:
        print(f"warning: {name}: {r['points failed']} points failed, {r['connected']} connected: saturated or overloaded")
EOF
