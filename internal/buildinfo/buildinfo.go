// Package buildinfo reads what the Go toolchain recorded about the build
// of the running binary: the commit it was built from and, for 32-bit ARM,
// the instruction set it needs.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// stamped is set by the release build (make build, make dist) with
// -ldflags "-X github.com/outpost-edge/outpost/internal/buildinfo.stamped=COMMIT",
// which works where the toolchain's own stamping is off (-buildvcs=false).
var stamped string

// Commit is the commit the binary was built from: the stamped one, else
// the first 12 hex digits the toolchain recorded, with "-dirty" when the
// tree had uncommitted changes, else "unknown" (go run, no git).
func Commit() string {
	if stamped != "" {
		return stamped
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	return commit(info.Settings)
}

func commit(settings []debug.BuildSetting) string {
	rev, dirty := "", false
	for _, s := range settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "unknown"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}

// Platform is the OS and architecture the binary was built for, as
// artifacts name them: linux-arm64, linux-amd64, and for 32-bit ARM the
// variant, linux-armv6 or linux-armv7, since a GOARM=7 build does not run
// on an ARMv6 board (a Raspberry Pi Zero).
func Platform() string {
	var settings []debug.BuildSetting
	if info, ok := debug.ReadBuildInfo(); ok {
		settings = info.Settings
	}
	return platform(runtime.GOOS, runtime.GOARCH, settings)
}

func platform(goos, goarch string, settings []debug.BuildSetting) string {
	if goarch != "arm" {
		return goos + "-" + goarch
	}
	for _, s := range settings {
		// GOARM=7, or 7,softfloat
		if s.Key == "GOARM" && s.Value != "" && s.Value[0] >= '5' && s.Value[0] <= '7' {
			return goos + "-armv" + s.Value[:1]
		}
	}
	return goos + "-arm"
}

// PlatformCandidates are the artifact platforms a binary of platform p can
// run, best first: p itself and, for an ARM variant, plain "arm" (an
// artifact published for linux/arm is taken to run on every 32-bit ARM
// board: publish a GOARM=6 build under it).
func PlatformCandidates(p string) []string {
	if os, variant, ok := strings.Cut(p, "-armv"); ok && variant != "" {
		return []string{p, os + "-arm"}
	}
	return []string{p}
}
