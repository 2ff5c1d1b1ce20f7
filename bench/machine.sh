#!/bin/sh
# machine.sh — the facts about this machine that BENCHMARKS.md records.
set -eu
echo "cpus:   $(nproc)"
echo "model:  $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "memory: $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
echo "kernel: $(uname -sr)"
echo "go:     $(go version)"
echo "disk:   $(df -h "${TMPDIR:-/tmp}" | awk 'NR==2 { print $1 " (" $2 ") for " $6 }')"
