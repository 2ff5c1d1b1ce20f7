#!/bin/sh
# agent-size.sh — size of the static, stripped outpost-agent for every
# release architecture (make dist's), built as a release is, and of the
# linux/arm64 build with the optional CoAP transport (-tags coap).
set -eu
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
size() { # NAME FILE
	awk -v n="$1" -v b="$(wc -c <"$2")" 'BEGIN { printf "outpost-agent %-24s %9d bytes (%.2f MiB)\n", n, b, b / 1048576 }'
}
for target in arm64 amd64 arm:7 arm:6 riscv64; do
	arch=${target%%:*}
	goarm=
	name=linux/$arch
	case $target in arm:*) goarm=${target#arm:}; name=linux/armv$goarm ;; esac
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch GOARM=$goarm go build -trimpath -ldflags='-s -w' -o "$out/agent" ./cmd/outpost-agent
	size "$name" "$out/agent"
done
CGO_ENABLED=0 GOOS=linux GOARCH=arm64 go build -tags coap -trimpath -ldflags='-s -w' -o "$out/agent" ./cmd/outpost-agent
size "linux/arm64 -tags coap" "$out/agent"
