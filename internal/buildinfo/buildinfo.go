// Package buildinfo reads what the Go toolchain recorded about the build
// of the running binary: the commit it was built from.
package buildinfo

import "runtime/debug"

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
