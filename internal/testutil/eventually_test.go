package testutil

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// fakeTB records Fatalf instead of stopping the test.
type fakeTB struct {
	testing.TB
	failed string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) { f.failed = fmt.Sprintf(format, args...) }

func TestEventuallySucceeds(t *testing.T) {
	calls := 0
	Eventually(t, 5*time.Second, func() error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if calls != 3 {
		t.Errorf("fn called %d times, want 3", calls)
	}
}

func TestEventuallyFailsWithLastError(t *testing.T) {
	f := &fakeTB{TB: t}
	Eventually(f, 20*time.Millisecond, func() error { return errors.New("still broken") })
	if !strings.Contains(f.failed, "still broken") || !strings.Contains(f.failed, "20ms") {
		t.Errorf("Fatalf message = %q", f.failed)
	}
}
