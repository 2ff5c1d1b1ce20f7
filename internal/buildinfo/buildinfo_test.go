package buildinfo

import (
	"runtime/debug"
	"slices"
	"testing"
)

func TestCommit(t *testing.T) {
	tests := []struct {
		name     string
		settings []debug.BuildSetting
		want     string
	}{
		{"none recorded", nil, "unknown"},
		{"clean", []debug.BuildSetting{{Key: "vcs.revision", Value: "5477f84a1b2c3d4e5f60718293a4b5c6d7e8f901"}, {Key: "vcs.modified", Value: "false"}}, "5477f84a1b2c"},
		{"dirty", []debug.BuildSetting{{Key: "vcs.modified", Value: "true"}, {Key: "vcs.revision", Value: "5477f84a1b2c3d4e"}}, "5477f84a1b2c-dirty"},
		{"short", []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}}, "abc"},
	}
	for _, tt := range tests {
		if got := commit(tt.settings); got != tt.want {
			t.Errorf("%s: commit = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestPlatform(t *testing.T) {
	tests := []struct {
		goarch   string
		settings []debug.BuildSetting
		want     string
	}{
		{"arm64", []debug.BuildSetting{{Key: "GOARM64", Value: "v8.0"}}, "linux-arm64"},
		{"amd64", nil, "linux-amd64"},
		{"arm", []debug.BuildSetting{{Key: "GOARCH", Value: "arm"}, {Key: "GOARM", Value: "7"}}, "linux-armv7"},
		{"arm", []debug.BuildSetting{{Key: "GOARM", Value: "6,softfloat"}}, "linux-armv6"},
		{"arm", nil, "linux-arm"},
		{"riscv64", []debug.BuildSetting{{Key: "GORISCV64", Value: "rva20u64"}}, "linux-riscv64"},
	}
	for _, tt := range tests {
		if got := platform("linux", tt.goarch, tt.settings); got != tt.want {
			t.Errorf("platform(%s, %v) = %q, want %q", tt.goarch, tt.settings, got, tt.want)
		}
	}
	if got := Platform(); got == "" || got == "linux-arm" {
		t.Errorf("Platform() = %q for this test binary", got)
	}
}

func TestPlatformCandidates(t *testing.T) {
	for p, want := range map[string][]string{
		"linux-armv7": {"linux-armv7", "linux-arm"},
		"linux-armv6": {"linux-armv6", "linux-arm"},
		"linux-arm":   {"linux-arm"},
		"linux-arm64": {"linux-arm64"},
		"linux-amd64": {"linux-amd64"},
	} {
		if got := PlatformCandidates(p); !slices.Equal(got, want) {
			t.Errorf("PlatformCandidates(%q) = %q, want %q", p, got, want)
		}
	}
}
