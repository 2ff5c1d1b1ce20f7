#!/bin/sh
# all.sh — every benchmark BENCHMARKS.md quotes, one after the other
# (about 35 minutes on 2 cores; `make bench` runs it). Each result goes to
# bench/results/NAME.txt (and the terminal) headed by the date, the commit,
# the machine (bench/machine.sh) and the exact command, so a figure in
# BENCHMARKS.md can be traced to its run. Run it on an otherwise idle
# machine: the load generators share the cores with what they measure.
#
#   bench/all.sh              # everything
#   bench/all.sh rest broker  # only the steps named (see the list below)
#
# The peer steps need Debian packages: mosquitto (broker) and
# mender-client (peers); a missing one fails that step, not the others.
set -u
cd "$(dirname "$0")/.."
results=bench/results
mkdir -p "$results"
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit-dirty"
failed=
ran=

step() { # NAME COMMAND...
	name=$1
	shift
	if [ -n "$only" ] && ! echo " $only " | grep -q " $name "; then
		return
	fi
	ran="$ran $name"
	out="$results/$name.txt"
	{
		echo "# $name — $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $commit"
		bench/machine.sh | sed 's/^/# /'
		echo "# command: $*"
		echo
	} >"$out"
	echo "=== $name: $*"
	status=$(mktemp)
	{ "$@" 2>&1; echo $? >"$status"; } | tee -a "$out"
	[ "$(cat "$status")" = 0 ] || failed="$failed $name"
	rm -f "$status"
}
only="$*"

step machine     bench/machine.sh
step agent-size  bench/agent-size.sh
step payload     bench/payload.sh
step codec       go test -run '^$' -bench Telemetry -benchmem -count 3 ./protocol/
step spool       bench/spool.sh
step drain       bench/drain.sh
step ingest      bench/ingest.sh --batch 500 --duration 30s
step ingest-100  bench/ingest.sh
step agent-start bench/agent-start.sh
step agent-rss   bench/agent-rss.sh
step agent-idle  bench/agent-rss.sh --idle
step peers       bench/peers.sh
step rest        bench/rest.sh
step broker      bench/broker.sh
step shadow-1k   bench/shadow-rtt.sh 1000 2000 1
step shadow-10k  bench/shadow-rtt.sh 10000 5000 1
step capacity    bench/capacity.sh 10000 15000 17500 19500

for want in $only; do
	case " $ran " in *" $want "*) ;; *) echo "no step named $want (see the list in bench/all.sh)" >&2; failed="$failed $want" ;; esac
done
if [ -n "$failed" ]; then
	echo "failed:$failed (see $results/)" >&2
	exit 1
fi
echo "results in $results/"
