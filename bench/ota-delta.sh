#!/bin/sh
# ota-delta.sh — size of the OTA delta of outpost-agent (linux/arm64, static,
# stripped, built as a release is) against the full download, for:
#   1. two git revisions, OLD and NEW (default: the previous and the current
#      commit), each checked out with `git worktree add` in a temp dir;
#   2. the current tree built twice with different -X main.version values
#      (the smallest possible patch release).
# Usage: bench/ota-delta.sh [OLD_REV [NEW_REV]]
set -eu
cd "$(dirname "$0")/.."
old_rev=${1:-HEAD~1}
new_rev=${2:-HEAD}
tmp=$(mktemp -d)
cleanup() {
	for d in "$tmp/old" "$tmp/new"; do
		[ -d "$d" ] && git worktree remove --force "$d" >/dev/null 2>&1 || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT

build() { # dir out version
	(cd "$1" && CGO_ENABLED=0 GOOS=linux GOARCH=arm64 go build -trimpath -ldflags="-s -w -X main.version=$3" -o "$2" ./cmd/outpost-agent)
}

git worktree add --detach "$tmp/old" "$old_rev" >/dev/null 2>&1
git worktree add --detach "$tmp/new" "$new_rev" >/dev/null 2>&1
build "$tmp/old" "$tmp/agent-rev-old" 1.3.0
build "$tmp/new" "$tmp/agent-rev-new" 1.3.1
build . "$tmp/agent-tree-1.3.0" 1.3.0
build . "$tmp/agent-tree-1.3.1" 1.3.1

echo "outpost-agent linux/arm64, static, stripped; delta = zstd best, old build as raw dictionary"
echo "revisions: $(git rev-parse --short "$old_rev") -> $(git rev-parse --short "$new_rev"); tree: $(git rev-parse --short HEAD) + working changes"
go run ./bench/outpost-bench delta \
	"revs:$tmp/agent-rev-old=$tmp/agent-rev-new" \
	"version-only:$tmp/agent-tree-1.3.0=$tmp/agent-tree-1.3.1"
