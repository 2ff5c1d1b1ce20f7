#!/bin/sh
# agent-rss.sh — resident memory of outpost-agent with 20 simulated sensors
# read at 10 Hz for 60 s against a real hub; reads VmRSS and VmHWM from
# /proc/PID/status. --idle (or --sources 0) runs the agent joined and
# connected to the hub with no telemetry sources ("sources: []").
#
#   bench/agent-rss.sh
#   bench/agent-rss.sh --idle --duration 20s
#   bench/agent-rss.sh --sources 50 --rate 10 --duration 120s
#   bench/agent-rss.sh --workloads=false    # the agent without its service supervisor
set -eu
cd "$(dirname "$0")/.."
exec go run ./bench/outpost-bench rss "$@"
