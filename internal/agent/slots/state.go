package slots

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/outpost-edge/outpost/internal/atomicfile"
)

// File and directory names under the data directory.
const (
	// DirName is the directory under the data directory that holds the slots.
	DirName = "slots"
	// StateFileName is the state file in DirName.
	StateFileName = "state.json"
	// BinaryName is the binary's file name inside a slot directory.
	BinaryName   = "outpost-agent"
	lockFileName = "lock"
	tmpPrefix    = "." + BinaryName + ".tmp-"
)

// Slot names. The empty name stands for the installed binary.
const (
	SlotA = "a"
	SlotB = "b"
)

// Outcomes of a trial, in Result.Outcome.
const (
	OutcomeCommitted  = "committed"
	OutcomeRolledBack = "rolled_back"
)

// Trial limits.
const (
	// DefaultWindow is how long a trial has, from its first start, to
	// become healthy and commit.
	DefaultWindow = 60 * time.Second
	// MaxStarts is how many times a trial is started; the start after that
	// rolls it back (crash_loop).
	MaxStarts = 3
)

// Exit codes of `outpost-agent run` that concern updates. The systemd unit
// lists both in SuccessExitStatus and restarts on every exit.
const (
	// TrialExpiredExitCode: the trial was not healthy within its window
	// and has rolled itself back; the next start runs the previous version.
	TrialExpiredExitCode = 75
	// RestartExitCode: a trial was staged; the next start runs it.
	RestartExitCode = 76
)

// State is the content of state.json.
type State struct {
	// Active is the slot that runs when no trial is pending: "a", "b", or
	// "" for the installed binary.
	Active string `json:"active"`
	// ActiveVersion is the version in the active slot ("" with Active "").
	ActiveVersion string `json:"active_version,omitempty"`
	// InstalledVersion is the version of the installed binary when it last
	// started a trial. When the installed binary later reports another
	// version it has been replaced outside Outpost (a package upgrade), and
	// Launch goes back to it instead of running an older slot.
	InstalledVersion string `json:"installed_version,omitempty"`
	// Trial is the pending trial, or nil.
	Trial *Trial `json:"trial"`
	// LastResult is how the last trial ended, or nil if none has.
	LastResult *Result `json:"last_result"`
}

// Trial is a staged version on trial.
type Trial struct {
	// Slot holds the trial's binary; never the active slot.
	Slot string `json:"slot"`
	// Version is the version the binary was staged as.
	Version string `json:"version"`
	// JobID is the caller's reference (e.g. the OTA job), copied to the
	// Result.
	JobID string `json:"job_id,omitempty"`
	// WindowMS is the commit window in milliseconds.
	WindowMS int64 `json:"window_ms"`
	// StartedAt is the trial's first start; zero until then.
	StartedAt time.Time `json:"started_at,omitzero"`
	// Deadline is StartedAt plus the window; zero until the first start.
	Deadline time.Time `json:"deadline,omitzero"`
	// Starts counts the starts so far; Launch writes it before each exec.
	Starts int `json:"starts"`
}

// Window returns the trial's commit window.
func (t *Trial) Window() time.Duration {
	if t.WindowMS <= 0 {
		return DefaultWindow
	}
	return time.Duration(t.WindowMS) * time.Millisecond
}

// Result is how a trial ended.
type Result struct {
	Version string `json:"version"`
	Slot    string `json:"slot"`
	JobID   string `json:"job_id,omitempty"`
	// Outcome is OutcomeCommitted or OutcomeRolledBack.
	Outcome string `json:"outcome"`
	// Reason is a Reason constant for a rollback; "" for a commit.
	Reason string `json:"reason,omitempty"`
	// Starts is how many times the trial was started.
	Starts int       `json:"starts"`
	At     time.Time `json:"at"`
}

func slotsDir(dataDir string) string { return filepath.Join(dataDir, DirName) }

func statePath(dataDir string) string { return filepath.Join(dataDir, DirName, StateFileName) }

// SlotPath returns the path of slot's binary.
func SlotPath(dataDir, slot string) string {
	return filepath.Join(dataDir, DirName, slot, BinaryName)
}

// other returns the slot that is not active.
func other(active string) string {
	if active == SlotA {
		return SlotB
	}
	return SlotA
}

func validSlot(s string) bool { return s == SlotA || s == SlotB }

// validate reports what makes s unusable.
func (s *State) validate() error {
	var errs []error
	if s.Active != "" && !validSlot(s.Active) {
		errs = append(errs, fmt.Errorf("active slot %q", s.Active))
	}
	if t := s.Trial; t != nil {
		if !validSlot(t.Slot) || t.Slot == s.Active {
			errs = append(errs, fmt.Errorf("trial slot %q with active slot %q", t.Slot, s.Active))
		}
		if t.Starts < 0 {
			errs = append(errs, fmt.Errorf("trial starts %d", t.Starts))
		}
	}
	if r := s.LastResult; r != nil && r.Outcome != OutcomeCommitted && r.Outcome != OutcomeRolledBack {
		errs = append(errs, fmt.Errorf("last result outcome %q", r.Outcome))
	}
	return errors.Join(errs...)
}

// load reads state.json; a missing file is the zero State.
func load(dataDir string) (State, error) {
	var s State
	b, err := os.ReadFile(statePath(dataDir))
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("reading slot state: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return State{}, fmt.Errorf("%w: %s: %w", ErrCorruptState, statePath(dataDir), err)
	}
	if err := s.validate(); err != nil {
		return State{}, fmt.Errorf("%w: %s: %w", ErrCorruptState, statePath(dataDir), err)
	}
	return s, nil
}

// save writes state.json atomically.
func save(dataDir string, s State) error {
	if err := s.validate(); err != nil {
		return fmt.Errorf("saving slot state: %w", err)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding slot state: %w", err)
	}
	if err := atomicfile.Write(statePath(dataDir), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("saving slot state: %w", err)
	}
	return nil
}

// ensureDir creates dir (and its parent's entry durably) if missing.
func ensureDir(dir string, mode os.FileMode) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, mode); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	return atomicfile.SyncDir(filepath.Dir(dir))
}

// update runs fn on the state under the lock and saves the result when fn
// returns nil.
func update(dataDir string, fn func(*State) error) error {
	if err := ensureDir(slotsDir(dataDir), 0o700); err != nil {
		return err
	}
	unlock, err := lock(dataDir)
	if err != nil {
		return err
	}
	defer unlock()
	s, err := load(dataDir)
	if err != nil {
		return err
	}
	if err := fn(&s); err != nil {
		return err
	}
	return save(dataDir, s)
}

// rollback ends s's trial as rolled back.
func rollback(s *State, reason string, now time.Time) {
	t := s.Trial
	s.Trial = nil
	s.LastResult = &Result{Version: t.Version, Slot: t.Slot, JobID: t.JobID, Outcome: OutcomeRolledBack,
		Reason: reason, Starts: t.Starts, At: now.UTC()}
}

// Status returns the slot state for reporting: the active slot and
// version, the pending trial and how the last trial ended. Without a
// state.json it returns the zero State (the installed binary runs); a
// corrupt one is ErrCorruptState (the installed binary runs too).
func Status(dataDir string) (State, error) {
	return load(dataDir)
}

// Commit makes the pending trial the active slot: from now on it is the
// version that starts. The trial process calls it (through AwaitCommit)
// once it is healthy.
func Commit(dataDir string) error {
	return update(dataDir, func(s *State) error {
		t := s.Trial
		if t == nil {
			return ErrNoTrial
		}
		s.Active, s.ActiveVersion, s.Trial = t.Slot, t.Version, nil
		s.LastResult = &Result{Version: t.Version, Slot: t.Slot, JobID: t.JobID, Outcome: OutcomeCommitted,
			Starts: t.Starts, At: time.Now().UTC()}
		return nil
	})
}

// Rollback drops the pending trial with reason (a Reason constant or the
// caller's, e.g. "canceled"); the active slot stays. A job handler may call
// it to cancel a staged update before the restart.
func Rollback(dataDir, reason string) error {
	return update(dataDir, func(s *State) error {
		if s.Trial == nil {
			return ErrNoTrial
		}
		rollback(s, reason, time.Now())
		return nil
	})
}
