#!/bin/sh
# ingest.sh — hub ingest, MQTT → SQLite: 50 paho clients each keep 4 QoS 1
# publishes of 100-point protobuf batches in flight against a real
# `outpost hub`; prints acknowledged points/s (a PUBACK is sent only after
# the points are committed) and the hub's CPU use. The load generator runs on
# the same machine and competes with the hub for its cores.
#
#   bench/ingest.sh
#   bench/ingest.sh --devices 200 --window 2 --batch 500 --duration 30s
set -eu
cd "$(dirname "$0")/.."
exec go run ./bench/outpost-bench ingest "$@"
