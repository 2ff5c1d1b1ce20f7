#!/bin/sh
# peers.sh — outpost-agent next to a peer measured on the same machine in the
# same run: Debian's mender-client (3.4.x in bookworm), the Mender OTA client.
#
#   bench/peers.sh
#   bench/peers.sh --duration 60s
#   bench/peers.sh --server-url http://127.0.0.1:1 --no-agent
#
# It prints, with the exact commands and versions:
#   (a) the size of mender's main executable (/usr/bin/mender, from
#       `dpkg -L mender-client`), `file` and `ldd` on it, and the size of
#       outpost-agent built here as a release is (static, stripped);
#   (b) mender's resident memory as a daemon (`mender daemon`), sampled once a
#       second for --duration (default 30s) from /proc/PID/status: VmRSS at
#       end, max of the second half, VmHWM, RssAnon and RssFile at end, CPU;
#   (c) outpost-agent's figures from `outpost-bench rss`, idle (joined and
#       connected to a real hub on loopback, no sources) and with 20 sim
#       sources at 10 Hz, for the same duration (what agent-rss.sh runs);
# and the ratios agent/mender.
#
# What mender is given. A minimal mender.conf in a temp directory whose
# ServerURL is a port on 127.0.0.1 where nothing listens (default
# http://127.0.0.1:1): the daemon starts, tries to authorize, is refused and
# keeps retrying on its poll intervals (5 s each here), which is the loop a
# device without a reachable server runs. Before the daemon, `mender
# bootstrap` creates the device key (RSA 3072) so that key generation is not
# in the daemon's figures, as the agent's key is made by `outpost-agent join`
# before `outpost-agent run`; bootstrap itself fails (no server) and that is
# expected. DBus is disabled in mender.conf (no system bus is assumed), so
# the figure is for mender without its DBus API.
#
# System state. mender has flags for its config (--config, --fallback-config)
# and data directory (--data), and mender.conf keys for the device type file,
# the modules work path and the state script paths; all point into the temp
# directory, so /var/lib/mender (a symlink to /data/mender in the Debian
# package) is neither read nor written. Three paths are compiled in and have
# no flag: /etc/mender/artifact_info (the current artifact name),
# /usr/share/mender/identity/mender-device-identity (which the Debian package
# does not ship; without it the daemon cannot authorize) and
# /usr/share/mender/inventory/. The script therefore runs mender in a private
# mount namespace (`unshare --mount`; as root, otherwise with
# `--user --map-root-user`, which needs unprivileged user namespaces) with
# temp directories bind-mounted over /etc/mender, /usr/share/mender/identity
# and /usr/share/mender/inventory; the host's copies are not touched and the
# mounts vanish with the process. Logging goes to the temp directory
# (--no-syslog). Installing the package enables mender-client.service on
# systemd machines; this script neither starts nor stops that service.
#
# Nothing here needs the internet. On exit (also on Ctrl-C or TERM) mender and
# the agent bench are stopped and the temp directory is removed.
set -eu
cd "$(dirname "$0")/.."
. bench/proc-lib.sh # rss_kib

duration=30s
server_url=http://127.0.0.1:1
agent=yes
while [ $# -gt 0 ]; do
	case $1 in
	--duration) duration=${2:?--duration needs a value, e.g. 30s}; shift 2 ;;
	--duration=*) duration=${1#*=}; shift ;;
	--server-url) server_url=${2:?--server-url needs a value}; shift 2 ;;
	--server-url=*) server_url=${1#*=}; shift ;;
	--no-agent) agent=no; shift ;;
	-h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "peers.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
	esac
done
# secs is --duration in whole seconds; it accepts 45, 45s or 2m.
case $duration in
*[!0-9sm]* | '' | s | m) echo "peers.sh: --duration $duration: want seconds (30, 30s) or minutes (2m)" >&2; exit 2 ;;
*m) secs=$((${duration%m} * 60)) ;;
*s) secs=${duration%s} ;;
*) secs=$duration ;;
esac
if [ "$secs" -lt 2 ]; then
	echo "peers.sh: --duration must be at least 2s (one sample a second)" >&2
	exit 2
fi

status=$(dpkg-query -W -f='${db:Status-Abbrev}' mender-client 2>/dev/null || true)
if [ "${status%% *}" != ii ] || ! command -v mender >/dev/null 2>&1; then
	echo "peers.sh: mender-client is not installed; install it with: apt-get install mender-client" >&2
	exit 1
fi
for c in unshare mount file ldd; do
	if ! command -v $c >/dev/null 2>&1; then
		echo "peers.sh: $c not found (util-linux, mount, file and libc-bin provide them)" >&2
		exit 1
	fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/outpost-peers.XXXXXX")
case $tmp in
*[[:space:]]*) rm -rf "$tmp"; echo "peers.sh: temp directory $tmp has white space; set TMPDIR" >&2; exit 1 ;;
esac
mender_pid=
bench_pid=
cleanup() {
	set +e
	if [ -n "$mender_pid" ] && kill -0 "$mender_pid" 2>/dev/null; then
		kill -TERM "$mender_pid"
		i=0
		while kill -0 "$mender_pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
		kill -KILL "$mender_pid" 2>/dev/null
		wait "$mender_pid" 2>/dev/null
	fi
	if [ -n "$bench_pid" ] && kill -0 "$bench_pid" 2>/dev/null; then
		# outpost-bench stops its hub and agent on SIGINT and removes its own
		# scratch directory.
		kill -INT "$bench_pid"
		wait "$bench_pid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

show() { printf '+ %s\n' "$*"; }
run() {
	show "$@"
	"$@"
}
# mib prints KiB or bytes (with a second argument of 1048576) as MiB.
mib() { awk -v v="$1" -v d="${2:-1024}" 'BEGIN { printf "%.1f", v / d }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; }

echo "== versions"
run dpkg-query -W mender-client
run uname -srm
run go version

echo
echo "== (a) binary size"
bin=$(dpkg -L mender-client | grep -E '^/usr/s?bin/[^/]+$' | head -n 1)
[ -n "$bin" ] || { echo "peers.sh: no executable in /usr/bin or /usr/sbin in dpkg -L mender-client" >&2; exit 1; }
show "dpkg -L mender-client | grep -E '^/usr/s?bin/'"
dpkg -L mender-client | grep -E '^/usr/s?bin/'
run file -L "$bin"
show ldd "$bin"
ldd "$bin" | sed 's/ (0x[0-9a-f]*)$//'
mender_bytes=$(wc -c <"$bin")
echo "mender ($bin): $mender_bytes bytes ($(mib "$mender_bytes" 1048576) MiB), not counting the shared libraries above"
# The libraries it needs (shared with other programs on a full distribution,
# but on a minimal device image they are there for mender alone).
libs_bytes=$(ldd "$bin" | awk '/=> \// { print $3 }' | xargs -r readlink -f | xargs -r stat -Lc %s | awk '{ s += $1 } END { print s + 0 }')
echo "mender's shared libraries: $libs_bytes bytes ($(mib "$libs_bytes" 1048576) MiB); with the executable $((mender_bytes + libs_bytes)) bytes ($(mib $((mender_bytes + libs_bytes)) 1048576) MiB)"

show "CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o $tmp/outpost-agent ./cmd/outpost-agent"
CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$tmp/outpost-agent" ./cmd/outpost-agent
run file "$tmp/outpost-agent"
agent_bytes=$(wc -c <"$tmp/outpost-agent")
echo "outpost-agent linux/$(go env GOARCH), static, stripped: $agent_bytes bytes ($(mib "$agent_bytes" 1048576) MiB)"

echo
echo "== (b) mender daemon RSS, $secs s"
m=$tmp/mender
mkdir -p "$m/data" "$m/etc" "$m/identity" "$m/inventory"
cat >"$m/identity/mender-device-identity" <<'EOF'
#!/bin/sh
# A fixed identity: the Debian package ships no identity script.
echo mac=02:00:00:00:be:01
EOF
chmod 755 "$m/identity/mender-device-identity"
echo artifact_name=outpost-peers-bench >"$m/etc/artifact_info"
echo device_type=outpost-peers-bench >"$m/data/device_type"
cat >"$m/mender.conf" <<EOF
{
  "ServerURL": "$server_url",
  "DeviceTypeFile": "$m/data/device_type",
  "UpdatePollIntervalSeconds": 5,
  "InventoryPollIntervalSeconds": 5,
  "RetryPollIntervalSeconds": 5,
  "ModulesWorkPath": "$m/data/modules/v3",
  "ArtifactScriptsPath": "$m/data/scripts",
  "RootfsScriptsPath": "$m/etc/scripts",
  "DBus": {"Enabled": false}
}
EOF
show "cat $m/mender.conf"
cat "$m/mender.conf"
ns=
[ "$(id -u)" -eq 0 ] || ns='--user --map-root-user'
# in_ns runs "$@" in a private mount namespace with the temp directories
# over mender's compiled-in paths. It execs, and so do unshare and sh, so the
# PID of a background in_ns is mender's own; run it in a subshell otherwise.
in_ns() {
	# shellcheck disable=SC2086,SC2016 # $ns is zero or more flags; $1… are sh -c's
	exec unshare $ns --mount --propagation private sh -c '
		mount --bind "$1" /etc/mender &&
		mount --bind "$2" /usr/share/mender/identity &&
		mount --bind "$3" /usr/share/mender/inventory &&
		shift 3 && exec "$@"' sh "$m/etc" "$m/identity" "$m/inventory" "$@"
}
flags="--no-syslog --config $m/mender.conf --fallback-config $m/fallback.conf --data $m/data"
ns_show="unshare ${ns:+$ns }--mount --propagation private, with bind mounts $m/etc -> /etc/mender, $m/identity -> /usr/share/mender/identity, $m/inventory -> /usr/share/mender/inventory:"
echo "$ns_show"
show mender "$flags" bootstrap "# creates the device key; fails to authorize (nothing answers at $server_url), as expected"
# shellcheck disable=SC2086
if (in_ns mender $flags bootstrap) >"$m/bootstrap.log" 2>&1; then
	echo "mender bootstrap: exit 0"
else
	echo "mender bootstrap: exit $? (expected: no server)"
fi
if [ ! -s "$m/data/mender-agent.pem" ]; then
	echo "peers.sh: mender bootstrap made no device key; its log:" >&2
	cat "$m/bootstrap.log" >&2
	exit 1
fi
echo "$ns_show"
show mender "$flags" daemon
# shellcheck disable=SC2086
in_ns mender $flags daemon >"$m/daemon.log" 2>&1 &
mender_pid=$!
t0=$(date +%s%N)
: >"$m/samples"
i=0
while [ $i -lt "$secs" ]; do
	sleep 1
	i=$((i + 1))
	if ! kill -0 "$mender_pid" 2>/dev/null; then
		echo "peers.sh: mender daemon exited; its log:" >&2
		cat "$m/daemon.log" >&2
		exit 1
	fi
	rss_kib "$mender_pid" >>"$m/samples"
done
cp "/proc/$mender_pid/status" "$m/status"
cp "/proc/$mender_pid/stat" "$m/stat"
t1=$(date +%s%N)
comm=$(cat "/proc/$mender_pid/comm")
kill -TERM "$mender_pid"
wait "$mender_pid" 2>/dev/null || true
shown_pid=$mender_pid
mender_pid=
field() { awk -v k="$1:" '$1 == k { print $2 }' "$m/status"; }
m_end=$(tail -n 1 "$m/samples")
m_max=$(awk '{ s[NR] = $1 } END { m = 0; for (i = int(NR / 2) + 1; i <= NR; i++) if (s[i] > m) m = s[i]; print m }' "$m/samples")
m_hwm=$(field VmHWM)
m_anon=$(field RssAnon)
m_file=$(field RssFile)
# utime and stime are fields 14 and 15 of /proc/PID/stat, in clock ticks.
cpu=$(awk -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.1f", 100 * ($12 + $13) / hz / ((t1 - t0) / 1e9) }' "$m/stat")
auths=$(grep -c 'auth_requests' "$m/daemon.log" || true)
echo "process sampled: PID $shown_pid ($comm); $(grep -c . "$m/samples") samples; $auths failed authorization requests in its log; last log lines:"
tail -n 3 "$m/daemon.log" | cut -c 1-200
echo "mender daemon RSS, minimal config, server unreachable, for ${secs}s: VmRSS at end $(mib "$m_end") MiB, max of second half $(mib "$m_max") MiB, VmHWM $(mib "$m_hwm") MiB (at end: RssAnon $(mib "$m_anon") MiB, RssFile $(mib "$m_file") MiB incl. the mmapped mender-store); CPU $cpu% of one core"

if [ $agent = no ]; then
	echo
	echo "== ratios agent/mender"
	echo "binary size: $(ratio "$agent_bytes" "$mender_bytes")"
	exit 0
fi

echo
echo "== (c) outpost-agent RSS, ${secs}s (the runs agent-rss.sh makes)"
run go build -o "$tmp/outpost-bench" ./bench/outpost-bench
for mode in idle busy; do
	if [ $mode = idle ]; then set -- --idle; else set -- --sources 20 --rate 10; fi
	show outpost-bench rss "$@" --duration "${secs}s"
	"$tmp/outpost-bench" rss "$@" --duration "${secs}s" >"$tmp/agent-$mode.out" &
	bench_pid=$!
	wait "$bench_pid"
	bench_pid=
	cat "$tmp/agent-$mode.out"
done
# agentfig MODE LABEL prints one MiB figure from the agent's result line.
agentfig() { sed -n "s/.*$2 \([0-9.]*\) MiB.*/\1/p" "$tmp/agent-$1.out"; }

echo
echo "== ratios agent/mender (same machine, same run)"
echo "binary size: $agent_bytes / $mender_bytes bytes = $(ratio "$agent_bytes" "$mender_bytes")"
echo "binary size with mender's shared libraries: $agent_bytes / $((mender_bytes + libs_bytes)) bytes = $(ratio "$agent_bytes" $((mender_bytes + libs_bytes)))"
for mode in idle busy; do
	if [ $mode = idle ]; then what="agent idle (no sources)"; else what="agent 20 sources at 10 Hz"; fi
	a_end=$(agentfig $mode 'VmRSS at end')
	a_max=$(agentfig $mode 'max of second half')
	a_hwm=$(agentfig $mode 'VmHWM')
	a_anon=$(agentfig $mode 'RssAnon')
	echo "$what / mender daemon: VmRSS at end $a_end / $(mib "$m_end") = $(ratio "$a_end" "$(mib "$m_end")"), max of second half $a_max / $(mib "$m_max") = $(ratio "$a_max" "$(mib "$m_max")"), VmHWM $a_hwm / $(mib "$m_hwm") = $(ratio "$a_hwm" "$(mib "$m_hwm")"), RssAnon $a_anon / $(mib "$m_anon") = $(ratio "$a_anon" "$(mib "$m_anon")")"
done
