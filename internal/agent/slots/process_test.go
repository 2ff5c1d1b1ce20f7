package slots

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/outpost-edge/outpost/internal/execbusy"
	"github.com/outpost-edge/outpost/internal/testutil"
)

// fakes are fakeagent binaries built by TestMain, by version.
var fakes = map[string]string{"1.0.0": "", "2.0.0": "", "3.0.0": ""}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "slots-fakeagent-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := 1
	if err := buildFakes(dir); err != nil {
		fmt.Fprintln(os.Stderr, "building fakeagent:", err)
	} else {
		code = m.Run()
		if code == 0 {
			if err := goleak.Find(); err != nil {
				fmt.Fprintln(os.Stderr, "goleak:", err)
				code = 1
			}
		}
	}
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func buildFakes(dir string) error {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("the go command is not on PATH: %w", err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for v := range fakes {
		out := filepath.Join(dir, v, BinaryName)
		fakes[v] = out
		wg.Go(func() {
			cmd := exec.Command(goTool, "build", "-o", out, "-ldflags", "-X main.version="+v, "./testdata/fakeagent")
			if b, err := cmd.CombinedOutput(); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("version %s: %w\n%s", v, err, b))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// rig is one device: an installed binary (fakeagent 1.0.0, as systemd
// would start it) and a data directory.
type rig struct {
	t         *testing.T
	data      string
	installed string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	dir := t.TempDir()
	r := &rig{t: t, data: filepath.Join(dir, "data"), installed: filepath.Join(dir, "bin", BinaryName)}
	if err := os.MkdirAll(r.data, 0o700); err != nil {
		t.Fatal(err)
	}
	r.install("1.0.0")
	return r
}

// install replaces the installed binary with the fake of version.
func (r *rig) install(version string) {
	r.t.Helper()
	b, err := os.ReadFile(fakes[version])
	if err != nil {
		r.t.Fatal(err)
	}
	_ = os.MkdirAll(filepath.Dir(r.installed), 0o755)
	_ = os.Remove(r.installed)
	if err := execbusy.WriteFile(r.installed, b, 0o755); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) setMode(version, mode string) {
	r.t.Helper()
	if err := os.WriteFile(filepath.Join(r.data, "mode-"+version), []byte(mode), 0o600); err != nil {
		r.t.Fatal(err)
	}
}

// command builds a command of bin without the slot variables of the
// test's own environment.
func (r *rig) command(bin string, extraEnv []string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(withEnv(os.Environ()), extraEnv...)
	return cmd
}

// wait waits for cmd and returns its exit code (-1 when killed).
func (r *rig) wait(cmd *exec.Cmd, stderr *bytes.Buffer) int {
	r.t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			r.t.Fatalf("waiting for %s: %v", cmd.Path, err)
		}
		return cmd.ProcessState.ExitCode()
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		r.t.Fatalf("%s %q did not exit within 15s; stderr:\n%s", cmd.Path, cmd.Args, stderr)
		return 0
	}
}

// stage runs `<bin> stage` and returns its exit code and stderr.
func (r *rig) stage(bin, version string, window time.Duration, extraEnv ...string) (int, string) {
	r.t.Helper()
	var stderr bytes.Buffer
	cmd := r.command(bin, extraEnv, "stage", r.data, fakes[version], version, window.String())
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	return r.wait(cmd, &stderr), stderr.String()
}

// startRun starts the installed binary's `run`, as systemd does.
func (r *rig) startRun() (*exec.Cmd, *bytes.Buffer) {
	r.t.Helper()
	var stderr bytes.Buffer
	cmd := r.command(r.installed, nil, "run", r.data)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	return cmd, &stderr
}

// runOnce is one start of the service; it returns the exit code.
func (r *rig) runOnce() int {
	r.t.Helper()
	cmd, stderr := r.startRun()
	return r.wait(cmd, stderr)
}

// superviseUntilSteady restarts the service, like Restart=always, until a
// start runs a binary that is not on trial; it returns the exit codes.
func (r *rig) superviseUntilSteady(maxStarts int) []int {
	r.t.Helper()
	var codes []int
	for range maxStarts {
		codes = append(codes, r.runOnce())
		runs := r.runs()
		if len(runs) > 0 && strings.HasSuffix(runs[len(runs)-1], " false") {
			return codes
		}
	}
	r.t.Fatalf("no steady start within %d starts; exit codes %v, runs %q", maxStarts, codes, r.runs())
	return nil
}

// runs returns the lines of runs.log: "<version> <slot> <trial>".
func (r *rig) runs() []string {
	b, err := os.ReadFile(filepath.Join(r.data, "runs.log"))
	if errors.Is(err, os.ErrNotExist) || len(b) == 0 {
		return nil
	}
	if err != nil {
		r.t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// lastRuns returns the last n lines of runs.log.
func (r *rig) lastRuns(n int) []string {
	runs := r.runs()
	return runs[max(len(runs)-n, 0):]
}

func (r *rig) state() State {
	r.t.Helper()
	s, err := Status(r.data)
	if err != nil {
		r.t.Fatalf("Status: %v", err)
	}
	return s
}

// commit stages version from the installed binary and runs its trial to
// the commit.
func (r *rig) commit(version string) {
	r.t.Helper()
	if code, stderr := r.stage(r.installed, version, 30*time.Second); code != RestartExitCode {
		r.t.Fatalf("stage %s = %d, want %d; stderr %s", version, code, RestartExitCode, stderr)
	}
	r.superviseUntilSteady(3)
	if s := r.state(); s.Trial != nil || s.ActiveVersion != version {
		r.t.Fatalf("after committing %s: state %+v", version, s)
	}
}

func wantResult(t *testing.T, s State, version, outcome, reason string, starts int) {
	t.Helper()
	r := s.LastResult
	if r == nil {
		t.Fatalf("no last_result; state %+v", s)
	}
	if r.Version != version || r.Outcome != outcome || r.Reason != reason || (starts > 0 && r.Starts != starts) {
		t.Errorf("last_result = %+v; want version %s, %s, reason %q, starts %d", *r, version, outcome, reason, starts)
	}
	if s.Trial != nil {
		t.Errorf("trial still pending: %+v", *s.Trial)
	}
}

func TestTrialCommits(t *testing.T) {
	r := newRig(t)
	if code, stderr := r.stage(r.installed, "2.0.0", 30*time.Second); code != RestartExitCode {
		t.Fatalf("stage = %d, stderr %s", code, stderr)
	}
	if s := r.state(); s.Trial == nil || s.Trial.Slot != SlotA || s.Trial.Starts != 0 || s.Active != "" {
		t.Fatalf("state after Stage = %+v", s)
	}
	if codes := r.superviseUntilSteady(3); !slices.Equal(codes, []int{0, 0}) {
		t.Errorf("exit codes %v, want [0 0]", codes)
	}
	if got, want := r.runs(), []string{"2.0.0 a true", "2.0.0 a false"}; !slices.Equal(got, want) {
		t.Fatalf("runs = %q, want %q", got, want)
	}
	s := r.state()
	wantResult(t, s, "2.0.0", OutcomeCommitted, "", 1)
	if s.Active != SlotA || s.ActiveVersion != "2.0.0" || s.InstalledVersion != "1.0.0" {
		t.Errorf("state = %+v; want slot a active with 2.0.0, installed 1.0.0", s)
	}

	// The committed version stages the next one into the other slot.
	if code, stderr := r.stage(SlotPath(r.data, SlotA), "3.0.0", 30*time.Second); code != RestartExitCode {
		t.Fatalf("stage from slot a = %d, stderr %s", code, stderr)
	}
	r.superviseUntilSteady(3)
	if got, want := r.lastRuns(2), []string{"3.0.0 b true", "3.0.0 b false"}; !slices.Equal(got, want) {
		t.Fatalf("runs = %q, want %q", got, want)
	}
	if s := r.state(); s.Active != SlotB || s.ActiveVersion != "3.0.0" {
		t.Errorf("state = %+v; want slot b active", s)
	}
	// Later starts keep running it.
	r.runOnce()
	if got := r.lastRuns(1); got[0] != "3.0.0 b false" {
		t.Errorf("a later start ran %q", got)
	}
}

func TestTrialRollsBack(t *testing.T) {
	tests := []struct {
		name       string
		committed  bool // slot a holds a committed 2.0.0 before the trial of 3.0.0
		mode       string
		window     time.Duration
		wantReason string
		wantTrials int
		wantCode   int // exit code of a trial start
	}{
		{"exits at once", false, "exit", 30 * time.Second, ReasonCrashLoop, MaxStarts, 1},
		{"crash loop, previous slot", true, "crash", 30 * time.Second, ReasonCrashLoop, MaxStarts, 2},
		{"never connects", false, "never", time.Second, ReasonWindowExpired, 1, TrialExpiredExitCode},
		{"never connects, previous slot", true, "never", time.Second, ReasonWindowExpired, 1, TrialExpiredExitCode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			previous, trial, trialSlot := "1.0.0 - false", "2.0.0", SlotA
			if tt.committed {
				r.commit("2.0.0")
				previous, trial, trialSlot = "2.0.0 a false", "3.0.0", SlotB
			}
			r.setMode(trial, tt.mode)
			before := len(r.runs())
			if code, stderr := r.stage(r.installed, trial, tt.window); code != RestartExitCode {
				t.Fatalf("stage = %d, stderr %s", code, stderr)
			}
			codes := r.superviseUntilSteady(MaxStarts + 2)
			var want []string
			for range tt.wantTrials {
				want = append(want, trial+" "+trialSlot+" true")
			}
			want = append(want, previous)
			if got := r.runs()[before:]; !slices.Equal(got, want) {
				t.Errorf("runs = %q, want %q", got, want)
			}
			for _, c := range codes[:len(codes)-1] {
				if c != tt.wantCode {
					t.Errorf("trial exit codes %v, want %d", codes, tt.wantCode)
					break
				}
			}
			s := r.state()
			wantResult(t, s, trial, OutcomeRolledBack, tt.wantReason, tt.wantTrials)
			if tt.committed && (s.Active != SlotA || s.ActiveVersion != "2.0.0") {
				t.Errorf("state = %+v; want slot a with 2.0.0 still active", s)
			}
			r.runOnce()
			if got := r.lastRuns(1); got[0] != previous {
				t.Errorf("the next start ran %q, want %q", got[0], previous)
			}
		})
	}
}

// foreignELF returns a copy of the fake with the ELF machine of another
// architecture.
func foreignELF(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(fakes["2.0.0"])
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 20 || string(b[:4]) != "\x7fELF" {
		t.Skip("the test binary is not ELF")
	}
	machine := uint16(183) // EM_AARCH64
	if runtime.GOARCH == "arm64" {
		machine = 62 // EM_X86_64
	}
	b[18], b[19] = byte(machine), byte(machine>>8) // little-endian e_machine
	p := filepath.Join(t.TempDir(), "foreign")
	if err := execbusy.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestStageRejects(t *testing.T) {
	r := newRig(t)
	r.commit("2.0.0")
	garbage := filepath.Join(t.TempDir(), "garbage")
	if err := os.WriteFile(garbage, bytes.Repeat([]byte("not a program\x00\x01"), 100), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, binary, version, wantReason string
	}{
		{"another architecture", foreignELF(t), "2.0.0", ReasonExecFormat},
		{"not a program", garbage, "2.0.0", ReasonExecFormat},
		{"wrong version", fakes["3.0.0"], "9.9.9", ReasonVersionMismatch},
		{"version prefix only", fakes["3.0.0"], "3.0", ReasonVersionMismatch},
		{"missing file", filepath.Join(t.TempDir(), "nope"), "3.0.0", ReasonIO},
		{"no version", fakes["3.0.0"], "", ReasonInvalid},
	}
	statePath := statePath(r.data)
	before, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Stage(context.Background(), r.data, tt.binary, tt.version, StageOptions{VerifyTimeout: 5 * time.Second})
			if got := ReasonOf(err); got != tt.wantReason {
				t.Fatalf("Stage = %v (reason %q), want reason %q", err, got, tt.wantReason)
			}
			if after, _ := os.ReadFile(statePath); !bytes.Equal(after, before) {
				t.Errorf("state.json changed:\n%s", after)
			}
			if entries, _ := os.ReadDir(filepath.Join(r.data, DirName, SlotB)); len(entries) != 0 {
				t.Errorf("slot b holds %d files after a failed Stage", len(entries))
			}
		})
	}
	r.runOnce()
	if got := r.lastRuns(1); got[0] != "2.0.0 a false" {
		t.Errorf("after failed stages the agent ran %q", got[0])
	}

	// A pending trial refuses another.
	if err := Stage(context.Background(), r.data, fakes["3.0.0"], "3.0.0", StageOptions{}); err != nil {
		t.Fatal(err)
	}
	err = Stage(context.Background(), r.data, fakes["3.0.0"], "3.0.0", StageOptions{})
	if !errors.Is(err, ErrTrialPending) || ReasonOf(err) != ReasonTrialPending {
		t.Errorf("second Stage = %v, want ErrTrialPending", err)
	}
}

func TestKillDuringStageCopy(t *testing.T) {
	r := newRig(t)
	r.commit("2.0.0")
	before, _ := os.ReadFile(statePath(r.data))

	// The new binary comes through a FIFO, so the copy stops half way
	// until the test kills the stager.
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	var stderr bytes.Buffer
	cmd := r.command(r.installed, nil, "stage", r.data, fifo, "3.0.0", "30s")
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var w *os.File
	testutil.Eventually(t, 10*time.Second, func() error {
		var err error
		w, err = os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		return err
	})
	bin, _ := os.ReadFile(fakes["3.0.0"])
	if _, err := w.Write(bin[:len(bin)/2]); err != nil {
		t.Fatal(err)
	}
	slotB := filepath.Join(r.data, DirName, SlotB)
	testutil.Eventually(t, 10*time.Second, func() error {
		tmps, _ := filepath.Glob(filepath.Join(slotB, tmpPrefix+"*"))
		if len(tmps) == 0 {
			return errors.New("no partial copy yet")
		}
		if fi, err := os.Stat(tmps[0]); err != nil || fi.Size() == 0 {
			return fmt.Errorf("partial copy empty: %v", err)
		}
		return nil
	})
	_ = cmd.Process.Kill()
	if code := r.wait(cmd, &stderr); code != -1 {
		t.Fatalf("stager exit code %d, want killed", code)
	}
	_ = w.Close()

	if after, _ := os.ReadFile(statePath(r.data)); !bytes.Equal(after, before) {
		t.Errorf("state.json changed by a killed Stage:\n%s", after)
	}
	if _, err := os.Stat(filepath.Join(slotB, BinaryName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("slot b binary after a killed copy: %v", err)
	}
	r.runOnce()
	if got := r.lastRuns(1); got[0] != "2.0.0 a false" {
		t.Errorf("after a killed Stage the agent ran %q", got[0])
	}
	// The next Stage cleans up and succeeds.
	if code, stderr := r.stage(r.installed, "3.0.0", 30*time.Second); code != RestartExitCode {
		t.Fatalf("stage = %d, stderr %s", code, stderr)
	}
	if tmps, _ := filepath.Glob(filepath.Join(slotB, tmpPrefix+"*")); len(tmps) != 0 {
		t.Errorf("partial copies left: %q", tmps)
	}
	r.superviseUntilSteady(3)
	if got := r.lastRuns(1); got[0] != "3.0.0 b false" {
		t.Errorf("after the update the agent ran %q", got[0])
	}
}

func TestKillAfterStateWrite(t *testing.T) {
	r := newRig(t)
	if code, stderr := r.stage(r.installed, "2.0.0", 30*time.Second, "FAKE_KILL_AFTER_STAGE=1"); code != -1 {
		t.Fatalf("stage = %d, want killed; stderr %s", code, stderr)
	}
	r.superviseUntilSteady(3)
	if got, want := r.runs(), []string{"2.0.0 a true", "2.0.0 a false"}; !slices.Equal(got, want) {
		t.Errorf("runs = %q, want %q", got, want)
	}
	wantResult(t, r.state(), "2.0.0", OutcomeCommitted, "", 1)
}

func TestKillDuringTrial(t *testing.T) {
	tests := []struct {
		name       string
		window     time.Duration
		thenMode   string // "" keeps hanging; the window passes before the restart
		wantRuns   []string
		wantResult string
		wantReason string
	}{
		{"then healthy", 30 * time.Second, "good", []string{"2.0.0 a true", "2.0.0 a true", "2.0.0 a false"}, OutcomeCommitted, ""},
		{"window passes", time.Second, "", []string{"2.0.0 a true", "1.0.0 - false"}, OutcomeRolledBack, ReasonWindowExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			r.setMode("2.0.0", "hang")
			if code, stderr := r.stage(r.installed, "2.0.0", tt.window); code != RestartExitCode {
				t.Fatalf("stage = %d, stderr %s", code, stderr)
			}
			cmd, stderr := r.startRun()
			testutil.Eventually(t, 10*time.Second, func() error {
				if len(r.runs()) == 0 {
					return errors.New("trial not started yet")
				}
				return nil
			})
			_ = cmd.Process.Kill()
			r.wait(cmd, stderr)
			if tt.thenMode != "" {
				r.setMode("2.0.0", tt.thenMode)
			} else {
				deadline := r.state().Trial.Deadline
				testutil.Eventually(t, 5*time.Second, func() error {
					if !time.Now().After(deadline) {
						return errors.New("window still open")
					}
					return nil
				})
			}
			r.superviseUntilSteady(MaxStarts)
			if got := r.runs(); !slices.Equal(got, tt.wantRuns) {
				t.Errorf("runs = %q, want %q", got, tt.wantRuns)
			}
			wantResult(t, r.state(), "2.0.0", tt.wantResult, tt.wantReason, 0)
		})
	}
}

func TestKillAfterCommit(t *testing.T) {
	r := newRig(t)
	r.setMode("2.0.0", "commit-die")
	if code, stderr := r.stage(r.installed, "2.0.0", 30*time.Second); code != RestartExitCode {
		t.Fatalf("stage = %d, stderr %s", code, stderr)
	}
	if code := r.runOnce(); code != -1 {
		t.Fatalf("trial exit code %d, want killed", code)
	}
	wantResult(t, r.state(), "2.0.0", OutcomeCommitted, "", 1)
	r.runOnce()
	if got, want := r.runs(), []string{"2.0.0 a true", "2.0.0 a false"}; !slices.Equal(got, want) {
		t.Errorf("runs = %q, want %q", got, want)
	}
}

func TestBrokenStateRunsInstalled(t *testing.T) {
	tests := []struct {
		name       string
		breakState func(r *rig)
	}{
		{"garbage state", func(r *rig) { writeFile(r.t, statePath(r.data), "\x00\x01 not json") }},
		{"truncated state", func(r *rig) {
			b, _ := os.ReadFile(statePath(r.data))
			writeFile(r.t, statePath(r.data), string(b[:len(b)/2]))
		}},
		{"invalid slot", func(r *rig) { writeFile(r.t, statePath(r.data), `{"active":"../../tmp","trial":null}`) }},
		{"missing slot binary", func(r *rig) { _ = os.Remove(SlotPath(r.data, SlotA)) }},
		{"empty slot binary", func(r *rig) { writeFile(r.t, SlotPath(r.data, SlotA), "") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			r.commit("2.0.0")
			tt.breakState(r)
			if code := r.runOnce(); code != 0 {
				t.Errorf("exit code %d", code)
			}
			if got := r.lastRuns(1); got[0] != "1.0.0 - false" {
				t.Errorf("with a broken state the agent ran %q, want the installed binary", got[0])
			}
			// An update still works from there.
			if code, stderr := r.stage(r.installed, "3.0.0", 30*time.Second); code != RestartExitCode {
				t.Fatalf("stage = %d, stderr %s", code, stderr)
			}
			r.superviseUntilSteady(3)
			if got := r.lastRuns(1); !strings.HasPrefix(got[0], "3.0.0 ") {
				t.Errorf("after the update the agent ran %q", got[0])
			}
		})
	}
}

func TestInstalledBinaryReplaced(t *testing.T) {
	r := newRig(t)
	r.commit("2.0.0")
	r.install("3.0.0") // a package upgrade, outside Outpost
	r.runOnce()
	if got := r.lastRuns(1); got[0] != "3.0.0 - false" {
		t.Errorf("after the installed binary changed the agent ran %q, want the installed 3.0.0", got[0])
	}
	if s := r.state(); s.Active != "" || s.InstalledVersion != "3.0.0" {
		t.Errorf("state = %+v", s)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := execbusy.WriteFile(path, []byte(content), 0o700); err != nil {
		t.Fatal(err)
	}
}
