#!/bin/sh
# all.sh — every benchmark of BENCHMARKS.md, one after the other (~9 min).
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
./shadow-rtt.sh 1000 2000 1
./shadow-rtt.sh 10000 5000 1
