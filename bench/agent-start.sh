#!/bin/sh
# agent-start.sh — time from exec of outpost-agent to its first telemetry
# batch acknowledged by a real hub (20 starts; min, median, p90, max).
#
#   bench/agent-start.sh --runs 50
set -eu
cd "$(dirname "$0")/.."
exec go run ./bench/outpost-bench start "$@"
