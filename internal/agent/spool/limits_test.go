package spool

import (
	"fmt"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/testutil"
)

func TestSetLimitsWhileRunning(t *testing.T) {
	one := recordCost(len(mustRecord(t, point(100))))
	s := openSpool(t, t.TempDir(), Options{MaxBytes: 1000 * one, CommitInterval: 0})
	for i := range 20 {
		appendOK(t, s, points(100+i, 1))
	}
	if err := s.SetLimits(Limits{MaxBytes: 1, Overflow: OverflowDropOldest}); err == nil {
		t.Error("SetLimits accepted a max bytes below one record")
	}
	if err := s.SetLimits(Limits{MaxBytes: 1000 * one, Overflow: "explode"}); err == nil {
		t.Error("SetLimits accepted an unknown overflow")
	}
	// Smaller: the next commit drops the oldest points down to the limit.
	if err := s.SetLimits(Limits{MaxBytes: 10 * one, Overflow: OverflowDropOldest}); err != nil {
		t.Fatal(err)
	}
	appendOK(t, s, points(200, 1))
	if st := s.Stats(); st.Points != 10 || st.Dropped != 11 {
		t.Errorf("stats = %+v, want 10 points kept and 11 dropped", st)
	}
	if got := s.Limits(); got.MaxBytes != 10*one || got.Overflow != OverflowDropOldest || got.MaxAge != 0 {
		t.Errorf("Limits = %+v", got)
	}
	// A max age set at run time expires points, though the spool started
	// without one.
	if err := s.SetLimits(Limits{MaxBytes: 10 * one, MaxAge: time.Millisecond, Overflow: OverflowDropOldest}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if st := s.Stats(); st.Points != 0 {
			return fmt.Errorf("%d points left", st.Points)
		}
		return nil
	})
}
