#!/usr/bin/env bash
# capacity.sh — how many simulated devices one hub holds on this machine,
# and with how much memory per connection. For each fleet size it starts a
# fresh `outpost hub` on free loopback ports with an empty data directory
# and connects the fleet with `outpost sim` (one MQTT connection and its own
# credentials per device), then records:
#
#   connected  devices connected and subscribed within the connect timeout
#   connect    the slowest holder's connect phase (from its first dial)
#   RSS        the hub's RSS idle (fresh hub) and with the fleet (steady,
#              after the idle window; peak while connecting), and
#              (fleet - idle) / connected per connection
#   CPU        the hub's CPU while the fleet only keeps alive (IDLE seconds,
#              no telemetry), in % of one core
#   fds        the hub's open file descriptors with the fleet connected
#              (peak while connecting)
#   rtt p99    a shadow round trip p99 over PROBES probes, one at a time,
#              from PROBE_DEVICES extra devices while the fleet stays up
#
# A step passes when every device connected within the connect timeout and
# every round trip succeeded; the script stops at the first step that fails.
#
# The fleet is spread over several sim processes of at most PER_SIM devices
# each, so that the simulator's own file descriptor limit is not what is
# measured, and their connections come from SOURCE_IPS, so that the local
# port range (about 28,000 ports per source address) is not either. The
# soft open-files limit is raised to the hard limit for the hub and the
# simulators; the hub needs one descriptor per connection plus a few dozen.
# The simulators run on the same machine and compete with the hub for CPU.
#
#   bench/capacity.sh                          # 10k, 20k, … 50k
#   bench/capacity.sh 5000 10000 15000         # these steps
#   PROBES=500 IDLE=10 bench/capacity.sh 20000
#
# Environment: PER_SIM (10000), SOURCE_IPS (127.0.0.2-127.0.0.9),
# CONNECT_RATE (2000 devices/s in all), CONNECT_TIMEOUT (60s),
# PROBES (300), PROBE_DEVICES (100), IDLE (10 seconds), KEEP_LOGS (unset).
set -eu
cd "$(dirname "$0")/.."

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(10000 20000 30000 40000 50000)
per_sim=${PER_SIM:-10000}
source_ips=${SOURCE_IPS:-127.0.0.2-127.0.0.9}
connect_rate=${CONNECT_RATE:-2000}
connect_timeout=${CONNECT_TIMEOUT:-60s}
probes=${PROBES:-300}
probe_devices=${PROBE_DEVICES:-100}
idle=${IDLE:-10}
step_deadline=240 # seconds a step may take to enroll and connect
for n in "${steps[@]}"; do
	case $n in '' | *[!0-9]*) echo "capacity.sh: step $n is not a device count" >&2 && exit 2 ;; esac
	[ "$n" -le 60000 ] || { echo "capacity.sh: step $n is more than 60,000 devices" >&2 && exit 2; }
done

work=$(mktemp -d)
pids=()
cleanup() {
	trap - EXIT INT TERM
	[ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null
	wait 2>/dev/null
	if [ -n "${KEEP_LOGS:-}" ]; then echo "logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ulimit -n "$(ulimit -Hn)"
echo "open files: soft $(ulimit -Sn), hard $(ulimit -Hn) (for the hub and each simulator)"
echo "local port range: $(tr '\t' '-' </proc/sys/net/ipv4/ip_local_port_range) per source address; sim source IPs: $source_ips"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); CLK_TCK $(getconf CLK_TCK)"
go build -o "$work/outpost" ./cmd/outpost
o="$work/outpost"

. bench/proc-lib.sh # port, cpu_ticks, rss_kib, wait_port
# rss and ticks are rss_kib and cpu_ticks, 0 once the hub is gone.
rss() { rss_kib "$1" 2>/dev/null || echo 0; }
ticks() { cpu_ticks "$1" 2>/dev/null || echo 0; }
alive() { kill -0 "$1" 2>/dev/null; }
nfds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
# accept_queue PORT prints the listener's accept queue: connections the
# kernel completed that the hub has not accepted, and the backlog.
accept_queue() { ss -Hltn "sport = :$1" | awk '{ print $2 " waiting (backlog " $3 ")" }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
# connected_of LOG prints the last "connected X/Y devices" count of a sim.
connected_of() { sed -n 's/^connected \([0-9]*\)\/[0-9]* devices$/\1/p' "$1" | tail -1; }

# stop_pids sends SIGINT (a sim prints its summary on it) and waits.
stop_pids() {
	for p in "$@"; do kill -INT "$p" 2>/dev/null || true; done
	for p in "$@"; do wait "$p" 2>/dev/null || true; done
}

table=()
row() { table+=("$(printf '%-7s %-10s %-9s %-9s %-18s %-9s %-7s %-14s %-20s %s' "$@")"); }
row devices connected connect "RSS idle" "RSS fleet (peak)" "per conn" "CPU" "fds (peak)" "rtt p99 (ok/probes)" result

stopped=""
for n in "${steps[@]}"; do
	d="$work/$n"
	mkdir -p "$d"
	echo
	echo "== $n devices"
	http=127.0.0.1:$(port)
	mqtt=127.0.0.1:$(port)
	"$o" hub --data "$d/hub" --http "$http" --mqtt "$mqtt" --grpc 127.0.0.1:0 --log-level warn 2>"$d/hub.log" &
	hub=$!
	pids=("$hub")
	for _ in $(seq 100); do [ -s "$d/hub/admin-password" ] && break; sleep 0.1; done
	wait_port "$http" "$hub" "$d/hub.log" || exit 1
	export OUTPOST_CONFIG_DIR="$d/cfg"
	"$o" login --hub "http://$http" --user admin --password-stdin <"$d/hub/admin-password" >/dev/null
	sleep 1
	rss_idle=$(rss "$hub")

	# The holders: n devices over ceil(n / PER_SIM) sim processes.
	holders=$(((n + per_sim - 1) / per_sim))
	holder_pids=()
	left=$n
	for h in $(seq "$holders"); do
		size=$((left / (holders - h + 1)))
		left=$((left - size))
		"$o" sim -o json --prefix "cap$h" --devices "$size" --rate 0 --duration 10m \
			--connect-rate $((connect_rate / holders > 0 ? connect_rate / holders : 1)) \
			--connect-timeout "$connect_timeout" --source-ips "$source_ips" \
			>"$d/holder$h.json" 2>"$d/holder$h.log" &
		holder_pids+=($!)
		pids+=($!)
	done
	echo "hub pid $hub, $holders simulator(s) of about $((n / holders)) devices"

	# Wait until every holder has ended its connect phase (its per-second
	# "N devices connected" line) or exited, sampling the hub's peak RSS.
	rss_peak=0
	fds_peak=0
	t0=$(date +%s)
	while :; do
		done_count=0
		for h in $(seq "$holders"); do
			if grep -q ' devices connected, ' "$d/holder$h.log" || ! alive "${holder_pids[$((h - 1))]}"; then
				done_count=$((done_count + 1))
			fi
		done
		r=$(rss "$hub")
		[ "$r" -gt "$rss_peak" ] && rss_peak=$r
		f=$(nfds "$hub")
		[ "$f" -gt "$fds_peak" ] && fds_peak=$f
		[ "$done_count" -eq "$holders" ] && break
		if ! alive "$hub" || [ $(($(date +%s) - t0)) -gt $step_deadline ]; then break; fi
		sleep 1
	done
	connected=0
	for h in $(seq "$holders"); do
		c=$(connected_of "$d/holder$h.log")
		connected=$((connected + ${c:-0}))
	done
	echo "fleet: $connected/$n connected after $(($(date +%s) - t0))s (enrollment included)"

	# The fleet idles: keepalives only.
	cpu="-"
	if alive "$hub"; then
		t1=$(ticks "$hub")
		s1=$(date +%s.%N)
		sleep "$idle"
		t2=$(ticks "$hub")
		s2=$(date +%s.%N)
		cpu=$(awk -v t="$((t2 - t1))" -v hz="$(getconf CLK_TCK)" -v s1="$s1" -v s2="$s2" 'BEGIN { printf "%.1f%%", 100 * t / hz / (s2 - s1) }')
	fi
	rss_fleet=$(rss "$hub")
	[ "$rss_fleet" -gt "$rss_peak" ] && rss_peak=$rss_fleet
	fds=$(nfds "$hub")
	[ "$fds" -gt "$fds_peak" ] && fds_peak=$fds
	aq=$(accept_queue "${mqtt##*:}")
	per_conn="-"
	[ "$connected" -gt 0 ] && per_conn="$(((rss_fleet - rss_idle) / connected)) KiB"

	# Round trips at that size, from extra devices.
	rtt="-"
	probe_ok=0
	if alive "$hub" && [ "$connected" -gt 0 ]; then
		if "$o" sim -o json --prefix capprobe --devices "$probe_devices" --rate 0 --probes "$probes" \
			--probe-concurrency 1 --connect-timeout "$connect_timeout" --source-ips "$source_ips" \
			>"$d/probe.json" 2>"$d/probe.log"; then
			probe_ok=1
		fi
		rtt=$(python3 - "$d/probe.json" <<-'EOF'
			import json, sys
			try:
			    r = json.load(open(sys.argv[1]))
			except Exception:
			    print("no result"); sys.exit()
			s = r.get("shadow") or {}
			if not s:
			    print("none (%d/%d devices connected)" % (r.get("connected", 0), r.get("devices", 0)))
			elif s.get("ok"):
			    print("%.1fms (%d/%d)" % (s["p99_ns"] / 1e6, s["ok"], s["probes"]))
			else:
			    print("failed (0/%d)" % s["probes"])
		EOF
		)
	fi

	# Stop the holders; their summaries give the connect time.
	stop_pids "${holder_pids[@]}"
	connect=$(python3 - "$d" "$holders" <<-'EOF'
		import json, sys
		worst = 0
		for h in range(1, int(sys.argv[2]) + 1):
		    try:
		        worst = max(worst, json.load(open("%s/holder%d.json" % (sys.argv[1], h)))["connect_ns"])
		    except Exception:
		        pass
		print("%.1fs" % (worst / 1e9) if worst else "-")
	EOF
	)
	result=ok
	why=""
	if ! alive "$hub"; then
		result=FAIL why="the hub exited"
	elif [ "$connected" -lt "$n" ]; then
		result=FAIL why="$((n - connected)) of $n devices did not connect within $connect_timeout"
	elif [ "$probe_ok" -ne 1 ]; then
		result=FAIL why="round trips failed"
	fi
	row "$n" "$connected" "$connect" "$(mib "$rss_idle") MiB" "$(mib "$rss_fleet") ($(mib "$rss_peak")) MiB" \
		"$per_conn" "$cpu" "$fds ($fds_peak)" "$rtt" "$result"
	printf '%s\n' "${table[-1]}"
	if [ "$result" != ok ]; then
		stopped="stopped at $n devices: $why"
		echo "$stopped"
		echo "the hub's open files: $fds now, $fds_peak at the peak, limit $(ulimit -Sn);" \
			"MQTT listener's accept queue with the fleet: ${aq:-?}"
		echo "-- hub log (last lines):"
		tail -5 "$d/hub.log"
		for f in "$d"/holder*.log "$d/probe.log"; do
			[ -s "$f" ] || continue
			echo "-- $(basename "$f") (last lines):"
			grep -v '^connected [0-9]*/\|^enrolled [0-9]*/\|devices connected, \|done$' "$f" | tail -4
			grep '^connected [0-9]*/' "$f" | tail -1
		done
	fi
	stop_pids "${pids[@]}"
	pids=()
	[ -n "$stopped" ] && break
	rm -rf "$d/hub"
done

echo
echo "capacity on $(nproc) cores; fleet idle (no telemetry, keepalive 60s); RSS in MiB; CPU in % of one core over ${idle}s"
printf '%s\n' "${table[@]}"
if [ -n "$stopped" ]; then echo "$stopped"; else echo "every step passed"; fi
