#!/bin/sh
# drain.sh — drain to hub, end to end: an agent whose spool holds a backlog
# (200,000 points by default) connects to a real hub, and the time until the
# hub's broker has acknowledged (so the hub has committed) every point is
# measured. telemetry.drain_rate is 0 (no limit) unless DRAIN_RATE is set.
#
#   bench/drain.sh
#   bench/drain.sh --points 500000 --drain-rate 20000
set -eu
cd "$(dirname "$0")/.."
exec go run ./bench/outpost-bench drain "$@"
