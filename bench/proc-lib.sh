# proc-lib.sh — sourced by the bench scripts (hub-lib.sh, broker.sh,
# capacity.sh, peers.sh): a free loopback port and a process's CPU time and
# resident memory from /proc. POSIX sh; defines functions only.

# port prints a TCP port on 127.0.0.1 that was free a moment ago.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# cpu_ticks PID prints the process's utime+stime in clock ticks (getconf
# CLK_TCK a second). The fields are counted after the command name's closing
# parenthesis, since the name may contain spaces. It fails once PID is gone.
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

# rss_kib PID prints the process's VmRSS in KiB. It fails once PID is gone.
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# wait_port HOST:PORT PID LOG waits up to 10 s for a listener at HOST:PORT;
# it fails, printing LOG, if PID exits first or the time runs out.
wait_port() {
	for _ in $(seq 100); do
		python3 -c "import socket; socket.create_connection(('${1%:*}', ${1##*:}), 0.2)" 2>/dev/null && return 0
		kill -0 "$2" 2>/dev/null || break
		sleep 0.1
	done
	echo "nothing listening at $1 (PID $2); its log:" >&2
	cat "$3" >&2
	return 1
}
