//go:build unix

package collect

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/testutil"
)

func TestExecNumber(t *testing.T) {
	e, err := NewExec("probe", []string{"sh", "-c", `printf '  21.5\n'`}, ExecNumber)
	if err != nil {
		t.Fatal(err)
	}
	got, err := collectWithin(t, e, 5*time.Second)
	if err != nil || len(got) != 1 || got[0] != "=21.5" {
		t.Errorf("Collect = %v, %v; want one unnamed 21.5", got, err)
	}

	for _, tt := range []struct {
		name    string
		argv    []string
		wantErr string
	}{
		{"not a number", []string{"sh", "-c", "echo warm"}, `"warm" is not a finite number`},
		{"no output", []string{"true"}, "empty"},
		{"failing command", []string{"sh", "-c", "echo sensor unplugged >&2; exit 3"}, "exit status 3: sensor unplugged"},
		{"no such program", []string{"/nonexistent/probe"}, "no such file"},
		{"no shell unless asked", []string{"echo 1 | cat"}, "not found"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e, err := NewExec("probe", tt.argv, ExecNumber)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := collectWithin(t, e, 5*time.Second); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestExecJSONLines(t *testing.T) {
	script := `printf '%s\n' \
		'{"sensor": "temp", "value": 21.5}' \
		'' \
		'{"sensor": "door", "value": true, "ts_unix_ms": 1764086400000}' \
		'{"sensor": "mode", "value": "auto"}' \
		'{"sensor": "bad", "value": null}' \
		'{"name": "x", "value": 1}' \
		'not json' \
		'{"sensor": "nested", "value": {"a": 1}}' \
		'{"sensor": "has space", "value": 1}'`
	e, err := NewExec("box", []string{"sh", "-c", script}, ExecJSONLines)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pts, err := e.Collect(ctx, time.Now())
	got := describePoints(pts)
	want := []string{"box/temp=21.5", "box/door=true", `box/mode="auto"`}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("points = %v, want %v", got, want)
	}
	if len(pts) > 1 && pts[1].GetTsUnixMs() != 1764086400000 {
		t.Errorf("door ts = %d, want the one from the line", pts[1].GetTsUnixMs())
	}
	if err == nil {
		t.Fatal("err = nil, want the bad lines named")
	}
	for _, want := range []string{"line 5:", "null", "line 6:", "unknown field", "line 7:", "and 2 more bad lines"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err lacks %q:\n%v", want, err)
		}
	}
}

func TestExecTimeoutKillsProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	// The shell starts a grandchild that would keep the output pipe open
	// for 10s, then waits for it.
	e, err := NewExec("slow", []string{"sh", "-c", `sleep 10 & echo $! > ` + pidFile + `; wait`}, ExecNumber)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = collectWithin(t, e, 200*time.Millisecond)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Collect took %s, want about the 200ms timeout", took)
	}
	if err == nil || !strings.Contains(err.Error(), "killed") || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want killed at the deadline", err)
	}
	waitGone(t, pidFile)
}

func TestExecKillsLeftovers(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	// The command succeeds at once but leaves a child in the background.
	e, err := NewExec("quick", []string{"sh", "-c", `sleep 10 & echo $! > ` + pidFile + `; echo 5`}, ExecNumber)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got, err := collectWithin(t, e, 5*time.Second)
	if err != nil || len(got) != 1 || got[0] != "=5" {
		t.Errorf("Collect = %v, %v; want 5", got, err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Collect took %s", took)
	}
	waitGone(t, pidFile)
}

func TestExecCapsOutput(t *testing.T) {
	e, err := NewExec("chatty", []string{"yes"}, ExecNumber)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = collectWithin(t, e, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "printed more than") {
		t.Errorf("err = %v, want the output cap", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Collect took %s; the command should be killed at the cap", took)
	}
	if _, err := NewExec("x", nil, ExecNumber); err == nil {
		t.Error("NewExec without a command = nil error")
	}
	if _, err := NewExec("x", []string{"true"}, "xml"); err == nil {
		t.Error("NewExec with format xml = nil error")
	}
}

// waitGone waits until the process whose pid is in pidFile no longer runs.
func waitGone(t *testing.T, pidFile string) {
	t.Helper()
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		// A killed child of the reaped shell is reaped by init; until then
		// it is a zombie, which counts as gone.
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || strings.Contains(string(stat), ") Z ") {
			return nil
		}
		if err := syscall.Kill(pid, 0); err != nil {
			return nil
		}
		return fmt.Errorf("process %d still runs", pid)
	})
}

func TestExecHidesAgentSecrets(t *testing.T) {
	t.Setenv("OUTPOST_AGENT_MQTT_PASSWORD", "hunter2")
	t.Setenv("PROBE_SCALE", "3")
	e, err := NewExec("env", []string{"sh", "-c", `echo "${OUTPOST_AGENT_MQTT_PASSWORD:-0}${PROBE_SCALE}"`}, ExecNumber)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := collectWithin(t, e, 5*time.Second); err != nil || fmt.Sprint(got) != "[=3]" {
		t.Errorf("Collect = %v, %v; want 3 (the password hidden, other variables passed)", got, err)
	}
}
