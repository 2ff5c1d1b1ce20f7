package workload

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/testutil"
)

func TestLogsSinceNumbersLinesAcrossRemoval(t *testing.T) {
	s, _ := start(t, Options{CgroupRoot: t.TempDir()})
	if _, _, ok := s.LogsSince("talker", 0, 0); ok {
		t.Error("LogsSince of an unknown workload is ok")
	}
	spec := Spec{Name: "talker", Binary: helper, Args: []string{"print", "3"}}
	apply(t, s, spec)
	testutil.Eventually(t, 10*time.Second, func() error {
		if _, last, _ := s.LogsSince("talker", 0, 0); last != 4 { // 3 lines and "printed"
			return fmt.Errorf("last seq %d", last)
		}
		return nil
	})
	lines, last, ok := s.LogsSince("talker", 1, 2)
	if !ok || last != 4 || len(lines) != 2 || lines[0].Seq != 3 || lines[1].Line != "printed" || lines[1].Time.IsZero() {
		t.Errorf("LogsSince(1, 2) = %+v, %d, %v", lines, last, ok)
	}
	if lines, _, _ := s.LogsSince("talker", 4, 0); len(lines) != 0 {
		t.Errorf("LogsSince(4) = %+v", lines)
	}
	if got := s.Logs("talker", 0); len(got) != 4 || got[3] != "printed" {
		t.Errorf("Logs = %q", got)
	}

	// Removed, then deployed again: the numbers go on.
	apply(t, s)
	testutil.Eventually(t, 10*time.Second, func() error {
		if _, _, ok := s.LogsSince("talker", 0, 0); ok {
			return errors.New("still known")
		}
		return nil
	})
	apply(t, s, spec)
	testutil.Eventually(t, 10*time.Second, func() error {
		lines, last, _ := s.LogsSince("talker", 0, 0)
		// The old process may have said goodbye (line 5) on SIGTERM.
		if len(lines) != 4 || lines[0].Seq <= 4 || lines[3].Seq != last || lines[3].Line != "printed" {
			return fmt.Errorf("after redeploying: %+v, last %d", lines, last)
		}
		return nil
	})
}

func TestHealthCheckAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no 127.0.0.2 here: %v", err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	hc := HealthCheck{Type: HealthTCP, Port: port}.withDefaults()
	if err := newChecker("127.0.0.2").check(context.Background(), hc, nil, nil); err != nil {
		t.Errorf("check on 127.0.0.2:%d: %v", port, err)
	}
	if err := newChecker(DefaultAddress).check(context.Background(), hc, nil, nil); err == nil {
		t.Errorf("check on 127.0.0.1:%s passed; nothing listens there", strconv.Itoa(port))
	}
	if got := (Options{}).withDefaults().Address; got != DefaultAddress {
		t.Errorf("default address %q", got)
	}
}
