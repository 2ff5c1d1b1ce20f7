package slots

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/execbusy"
)

// stagedTrial writes a slot a binary (a copy of a fake) and a pending trial.
func stagedTrial(t *testing.T, starts int, deadline time.Time) string {
	t.Helper()
	data := t.TempDir()
	b, err := os.ReadFile(fakes["2.0.0"])
	if err != nil {
		t.Fatal(err)
	}
	_ = os.MkdirAll(filepath.Join(data, DirName, SlotA), 0o755)
	if err := execbusy.WriteFile(SlotPath(data, SlotA), b, 0o755); err != nil {
		t.Fatal(err)
	}
	s := State{Trial: &Trial{Slot: SlotA, Version: "2.0.0", WindowMS: 60000, Starts: starts, Deadline: deadline}}
	if err := save(data, s); err != nil {
		t.Fatal(err)
	}
	return data
}

func TestLaunchCountsTheStartBeforeExec(t *testing.T) {
	data := stagedTrial(t, 0, time.Time{})
	var gotPath string
	var gotArgv, gotEnv []string
	var startsAtExec int
	l := Launch(LaunchOptions{
		DataDir: data, Args: []string{"/usr/bin/outpost-agent", "run"}, Env: []string{"A=1", EnvTrial + "=0"}, Version: "1.0.0",
		exec: func(path string, argv, env []string) error {
			gotPath, gotArgv, gotEnv = path, argv, env
			s, err := load(data)
			if err != nil || s.Trial == nil {
				t.Fatalf("state at exec: %+v, %v", s, err)
			}
			startsAtExec = s.Trial.Starts
			return errors.New("exec format error")
		},
	})
	if startsAtExec != 1 {
		t.Errorf("starts on disk at exec = %d, want 1", startsAtExec)
	}
	if gotPath != SlotPath(data, SlotA) || !slices.Equal(gotArgv, []string{gotPath, "run"}) {
		t.Errorf("exec %q %q", gotPath, gotArgv)
	}
	if want := []string{"A=1", EnvSlot + "=a", EnvTrial + "=1"}; !slices.Equal(gotEnv, want) {
		t.Errorf("env %q, want %q", gotEnv, want)
	}
	// The exec failed: rolled back, and the installed binary runs.
	if l != (Launched{}) {
		t.Errorf("Launch = %+v, want the installed binary", l)
	}
	s, _ := load(data)
	if s.Trial != nil || s.LastResult == nil || s.LastResult.Reason != ReasonExecFailed {
		t.Errorf("state = %+v", s)
	}
}

func TestLaunchDecisions(t *testing.T) {
	tests := []struct {
		name       string
		starts     int
		deadline   time.Time
		env        []string
		wantExec   bool
		wantReason string
	}{
		{"fresh trial", 0, time.Time{}, nil, true, ""},
		{"second start", 1, time.Now().Add(time.Minute), nil, true, ""},
		{"starts used", MaxStarts, time.Now().Add(time.Minute), nil, false, ReasonCrashLoop},
		{"deadline passed", 1, time.Now().Add(-time.Second), nil, false, ReasonWindowExpired},
		{"disabled", 0, time.Time{}, []string{EnvDisable + "=1"}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := stagedTrial(t, tt.starts, tt.deadline)
			execd := false
			Launch(LaunchOptions{DataDir: data, Args: []string{"x", "run"}, Env: append([]string{"A=1"}, tt.env...),
				exec: func(string, []string, []string) error { execd = true; return errors.New("stop here") }})
			if execd != tt.wantExec {
				t.Errorf("exec'd = %v, want %v", execd, tt.wantExec)
			}
			s, _ := load(data)
			if tt.wantReason != "" && (s.LastResult == nil || s.LastResult.Reason != tt.wantReason) {
				t.Errorf("last_result = %+v, want reason %s", s.LastResult, tt.wantReason)
			}
		})
	}
}

func TestLaunchWithoutStateCreatesNothing(t *testing.T) {
	data := t.TempDir()
	if l := Launch(LaunchOptions{DataDir: data, Env: []string{}}); l != (Launched{}) {
		t.Errorf("Launch = %+v", l)
	}
	if entries, _ := os.ReadDir(data); len(entries) != 0 {
		t.Errorf("Launch created %d entries in the data directory", len(entries))
	}
}

func TestAwaitCommitWindowIgnoresAClockSetBack(t *testing.T) {
	data := stagedTrial(t, 1, time.Now().Add(time.Hour))
	l := Launched{Slot: SlotA, Trial: true, Deadline: time.Now().Add(time.Hour), Window: 200 * time.Millisecond}
	start := time.Now()
	err := AwaitCommit(context.Background(), data, l, func() bool { return false })
	if !errors.Is(err, ErrWindowExpired) {
		t.Fatalf("AwaitCommit = %v, want ErrWindowExpired", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("AwaitCommit took %s with a 200ms window", d)
	}
	if s, _ := load(data); s.LastResult == nil || s.LastResult.Reason != ReasonWindowExpired {
		t.Errorf("state = %+v", s)
	}
}
