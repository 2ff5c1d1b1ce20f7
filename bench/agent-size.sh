#!/bin/sh
# agent-size.sh — size of the static, stripped outpost-agent for linux/arm64
# (and linux/amd64 for comparison), built as a release is.
set -eu
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for arch in arm64 amd64; do
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath -ldflags='-s -w' -o "$out/outpost-agent-$arch" ./cmd/outpost-agent
	bytes=$(wc -c <"$out/outpost-agent-$arch")
	awk -v a="$arch" -v b="$bytes" 'BEGIN { printf "outpost-agent linux/%s, static, stripped: %d bytes (%.2f MiB)\n", a, b, b / 1048576 }'
done
CGO_ENABLED=0 GOOS=linux GOARCH=arm64 go build -tags coap -trimpath -ldflags='-s -w' -o "$out/outpost-agent-coap" ./cmd/outpost-agent
bytes=$(wc -c <"$out/outpost-agent-coap")
awk -v b="$bytes" 'BEGIN { printf "outpost-agent linux/arm64 with -tags coap: %d bytes (%.2f MiB)\n", b, b / 1048576 }'
