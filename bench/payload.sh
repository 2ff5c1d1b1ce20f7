#!/bin/sh
# payload.sh — telemetry payload bytes per point: JSON vs protobuf (the
# agent's compact form) vs protobuf + zstd, batches of 1 to 1000 points of
# 20 simulated sensors at 10 Hz.
set -eu
cd "$(dirname "$0")/.."
exec go run ./bench/outpost-bench payload "$@"
