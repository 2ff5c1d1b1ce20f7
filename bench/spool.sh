#!/bin/sh
# spool.sh — the agent spool's Go benchmarks: durable append with group
# commit (points/s) and reading batches back for the uplink.
#
#   bench/spool.sh                 # every spool benchmark, 5 runs each
#   BENCH=Append COUNT=3 bench/spool.sh
#
# Run from anywhere; the spool file lives in the test's temp dir, so TMPDIR
# selects the disk that is measured.
set -eu
cd "$(dirname "$0")/.."
exec go test -run '^$' -bench "${BENCH:-.}" -benchmem -count "${COUNT:-5}" -benchtime "${BENCHTIME:-1s}" ./internal/agent/spool/
