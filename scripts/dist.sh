#!/bin/sh
# dist.sh — the release: static (CGO_ENABLED=0), stripped binaries with the
# version and commit embedded, one tarball per binary and platform, and
# SHA256SUMS over the tarballs. Called by `make dist`.
#
#   scripts/dist.sh VERSION COMMIT OUTDIR
#
# OUTDIR/bin/linux_ARCH/BINARY are the unpacked binaries (the cross-arch
# test runs them under qemu-user); OUTDIR/BINARY_VERSION_linux_ARCH.tar.gz
# hold the binary, README.md and LICENSE. Tarballs are reproducible: sorted
# names, root owner, the commit's time as every file's time, gzip -n.
set -eu
cd "$(dirname "$0")/.."
[ $# -eq 3 ] || { echo "usage: scripts/dist.sh VERSION COMMIT OUTDIR" >&2; exit 2; }
version=$1 commit=$2 out=$3
mod=github.com/outpost-edge/outpost
ldflags="-s -w -X $mod/internal/cli.Version=$version -X main.version=$version -X $mod/internal/buildinfo.stamped=$commit"
mtime=$(git log -1 --format=%ct 2>/dev/null || date +%s)

# binary platform (ARCH[:GOARM]) — ARCH names the tarball.
targets="
outpost-agent amd64
outpost-agent arm64
outpost-agent armv7
outpost-agent armv6
outpost-agent riscv64
outpost amd64
outpost arm64
"

rm -rf "$out"
mkdir -p "$out/bin"
echo "$targets" | while read -r binary arch; do
  [ -n "$binary" ] || continue
  goarch=$arch goarm=
  case $arch in
    armv7) goarch=arm goarm=7 ;;
    armv6) goarch=arm goarm=6 ;;
  esac
  dir="$out/bin/linux_$arch"
  mkdir -p "$dir"
  printf '%-14s linux/%-8s' "$binary" "$arch"
  CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOARM=$goarm \
    go build -trimpath -ldflags "$ldflags" -o "$dir/$binary" "./cmd/$binary"
  name="${binary}_${version}_linux_$arch"
  stage=$(mktemp -d)
  mkdir "$stage/$name"
  cp "$dir/$binary" README.md "$stage/$name/"
  [ -f LICENSE ] && cp LICENSE "$stage/$name/"
  tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$mtime" -cf - "$name" | gzip -n -9 > "$out/$name.tar.gz"
  rm -rf "$stage"
  printf ' %10d bytes\n' "$(wc -c < "$dir/$binary")"
done
(cd "$out" && sha256sum ./*.tar.gz | sed 's| \./| |' > SHA256SUMS)
echo "wrote $(ls "$out"/*.tar.gz | wc -l) tarballs and $out/SHA256SUMS (version $version, commit $commit)"
