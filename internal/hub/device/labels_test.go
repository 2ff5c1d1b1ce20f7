package device

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/outpost-edge/outpost/internal/hub/store"
)

func ptr(s string) *string { return &s }

func TestSetLabels(t *testing.T) {
	tests := []struct {
		name  string
		start map[string]string
		patch map[string]*string
		want  map[string]string
	}{
		{"add", map[string]string{"site": "a"}, map[string]*string{"line": ptr("3")}, map[string]string{"site": "a", "line": "3"}},
		{"change", map[string]string{"site": "a"}, map[string]*string{"site": ptr("b")}, map[string]string{"site": "b"}},
		{"remove", map[string]string{"site": "a", "line": "3"}, map[string]*string{"line": nil}, map[string]string{"site": "a"}},
		{"remove missing is a no-op", map[string]string{"site": "a"}, map[string]*string{"nope": nil}, map[string]string{"site": "a"}},
		{"set and remove at once", map[string]string{"old": "x"}, map[string]*string{"old": nil, "new": ptr("")}, map[string]string{"new": ""}},
		{"remove all", map[string]string{"site": "a"}, map[string]*string{"site": nil}, map[string]string{}},
		{"empty patch", map[string]string{"site": "a"}, nil, map[string]string{"site": "a"}},
		{"to the limit", manyLabels(MaxLabels - 1), map[string]*string{"last": ptr(strings.Repeat("v", MaxLabelValueLen))},
			func() map[string]string {
				m := manyLabels(MaxLabels - 1)
				m["last"] = strings.Repeat("v", MaxLabelValueLen)
				return m
			}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.add(t, "pump-7", tt.start)
			d, err := f.svc.SetLabels(t.Context(), "pump-7", tt.patch)
			if err != nil {
				t.Fatalf("SetLabels: %v", err)
			}
			if d.ID != "pump-7" || !reflect.DeepEqual(d.Labels, tt.want) {
				t.Errorf("SetLabels returned %+v, want labels %v", d, tt.want)
			}
			got, err := f.svc.Get(t.Context(), "pump-7")
			if err != nil || !reflect.DeepEqual(got.Labels, tt.want) {
				t.Errorf("stored labels = %v, %v; want %v", got.Labels, err, tt.want)
			}
		})
	}
}

func TestSetLabelsRefuses(t *testing.T) {
	f := newFixture(t)
	start := manyLabels(MaxLabels)
	f.add(t, "pump-7", start)

	_, err := f.svc.SetLabels(t.Context(), "pump-7", map[string]*string{
		"bad key": ptr("v"),
		"long":    ptr(strings.Repeat("x", MaxLabelValueLen+1)),
	})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("SetLabels err = %v, want ErrInvalid", err)
	}
	for _, w := range []string{"at most 32 labels, got 34", `label key "bad key"`, `label "long": value longer`} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	if d, err := f.svc.Get(t.Context(), "pump-7"); err != nil || !reflect.DeepEqual(d.Labels, start) {
		t.Errorf("labels after a refused patch = %v, %v; want them unchanged", d.Labels, err)
	}

	if _, err := f.svc.SetLabels(t.Context(), "nope", map[string]*string{"a": ptr("b")}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetLabels(unknown) err = %v, want store.ErrNotFound", err)
	}
}

// TestSetLabelsConcurrent: concurrent patches of different keys of one
// device all survive.
func TestSetLabelsConcurrent(t *testing.T) {
	f := newFixture(t)
	f.add(t, "pump-7", nil)
	const n = 16
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, err := f.svc.SetLabels(t.Context(), "pump-7", map[string]*string{fmt.Sprintf("k%d", i): ptr("v")}); err != nil {
				t.Errorf("SetLabels: %v", err)
			}
		})
	}
	wg.Wait()
	if d, err := f.svc.Get(t.Context(), "pump-7"); err != nil || len(d.Labels) != n {
		t.Errorf("labels after %d concurrent patches = %v, %v; want all %d", n, d.Labels, err, n)
	}
}
