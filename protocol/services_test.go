package protocol

import (
	"strings"
	"testing"
)

func TestCheckServiceWord(t *testing.T) {
	for _, ok := range []string{"web", "thermo-api", "v1.2_beta", strings.Repeat("a", MaxServiceWordLen)} {
		if err := CheckServiceWord("service name", ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for s, want := range map[string]string{
		"":                                       "tag must be 1 to 128 bytes",
		strings.Repeat("a", MaxServiceWordLen+1): "tag must be 1 to 128 bytes, got 129",
		"web/api":                                `tag "web/api" has '/' at byte 3`,
		"wéb":                                    "at byte 1",
	} {
		if err := CheckServiceWord("tag", s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want it to contain %q", s, err, want)
		}
	}
}
