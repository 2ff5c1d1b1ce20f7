#!/bin/sh
# all.sh — every benchmark of BENCHMARKS.md, one after the other (~5 min).
set -eu
cd "$(dirname "$0")"
./machine.sh
./agent-size.sh
./payload.sh
./spool.sh
./drain.sh
./ingest.sh
./agent-start.sh
./agent-rss.sh
