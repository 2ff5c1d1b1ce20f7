#!/bin/sh
# rest.sh — hub REST API: 32 keep-alive clients load an authenticated device
# lookup (GET /api/v1/devices/{id}, JWT bearer) on a real `outpost hub`, then
# a bare gin GET /ping in ReleaseMode served by a separate child process;
# prints requests/s, p50/p99 latency, errors, each server's CPU seconds over
# the window and the ratio lookup / ping. The load generator runs on the same
# machine and competes with the servers for its cores; any non-200 answer
# fails the run.
#
#   bench/rest.sh
#   bench/rest.sh --concurrency 64 --duration 30s
set -eu
cd "$(dirname "$0")/.."
exec go run ./bench/outpost-bench rest "$@"
