package promscrape

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	in := `# HELP up Whether it is up.
# TYPE up gauge
up 1
# TYPE rejected_total counter
rejected_total{code="bad_seq",lane="live"} 3
rejected_total{code="too_large",lane="live"} 1
# TYPE commit_seconds histogram
commit_seconds_bucket{le="0.1"} 2
commit_seconds_bucket{le="+Inf"} 3
commit_seconds_sum 0.25
commit_seconds_count 3
# TYPE plain untyped
plain 4.5
`
	got, err := Parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"up": 1,
		`rejected_total{code="bad_seq",lane="live"}`:   3,
		`rejected_total{code="too_large",lane="live"}`: 1,
		"commit_seconds_sum":                           0.25, "commit_seconds_count": 3,
		"plain": 4.5,
	}
	if len(got) != len(want) {
		t.Errorf("got %d samples, want %d: %v", len(got), len(want), got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	if _, err := Parse(strings.NewReader("up{ 1\n")); err == nil {
		t.Error("malformed input parsed without error")
	}
}
