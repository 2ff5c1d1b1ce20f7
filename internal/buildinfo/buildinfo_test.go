package buildinfo

import (
	"runtime/debug"
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
