package slots

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Environment variables between the launcher and the binary it execs.
const (
	// EnvSlot names the slot the process was exec'd from; a process that
	// has it does not launch again.
	EnvSlot = "OUTPOST_AGENT_SLOT"
	// EnvTrial is "1" in a trial.
	EnvTrial = "OUTPOST_AGENT_TRIAL"
	// EnvDisable, when set to anything but "" or "0", makes Launch do
	// nothing: the installed binary runs, state.json is not read.
	EnvDisable = "OUTPOST_AGENT_NO_SLOTS"
)

// LaunchOptions are Launch's inputs.
type LaunchOptions struct {
	// DataDir is the agent's data directory. Required.
	DataDir string
	// Args is the command line to exec with, program name first
	// (os.Args); the program name is replaced by the slot binary's path.
	Args []string
	// Env is the environment; nil means the process's own, in which case
	// Launch also removes EnvSlot and EnvTrial from it once read, so that
	// the agent's child processes do not inherit them.
	Env []string
	// Version is this binary's version. Used to notice that the installed
	// binary was replaced since it started the last trial.
	Version string
	// Logger receives what Launch decided; nil discards.
	Logger *slog.Logger

	// now and exec replace the clock and syscall.Exec in tests.
	now  func() time.Time
	exec func(path string, argv, env []string) error
}

// Launched says what the calling process is, when Launch returns.
type Launched struct {
	// Slot is the slot this process runs from; "" for the installed binary.
	Slot string
	// Version is the version recorded for Slot; "" for the installed binary.
	Version string
	// Trial reports whether this process is an uncommitted trial, which
	// must call AwaitCommit.
	Trial bool
	// Deadline is when the trial's window ends (by the wall clock);
	// Window its length.
	Deadline time.Time
	Window   time.Duration
}

// Launch decides which binary runs the agent and execs it; it returns only
// when the calling process should run the agent itself. Call it first in
// `outpost-agent run`, before anything else touches the data directory.
//
// Started by the init system (no EnvSlot), it is the launcher:
//   - a pending trial that has not used MaxStarts starts nor passed its
//     deadline: count the start in state.json (synced before the exec, so
//     that a crash loop ends), then exec the trial slot with EnvTrial=1;
//   - a trial that has: roll it back (crash_loop, commit_window_expired;
//     slot_missing when its binary is gone) and go on;
//   - an active slot: exec it with EnvSlot set;
//   - otherwise, or when anything fails: return, and the installed binary
//     runs. A missing or corrupt state.json never stops the agent.
//
// Exec'd from a slot (EnvSlot set), it returns at once with what the
// process is. Launch never fails: problems are logged.
func Launch(opts LaunchOptions) Launched {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := opts.now
	if now == nil {
		now = time.Now
	}
	execFn := opts.exec
	if execFn == nil {
		execFn = execve
	}
	env, own := opts.Env, opts.Env == nil
	if own {
		env = os.Environ()
	}
	if v := lookupEnv(env, EnvDisable); v != "" && v != "0" {
		return Launched{}
	}
	if slot := lookupEnv(env, EnvSlot); slot != "" {
		if own {
			_ = os.Unsetenv(EnvSlot)
			_ = os.Unsetenv(EnvTrial)
		}
		return child(opts.DataDir, slot, lookupEnv(env, EnvTrial) == "1", log)
	}
	if opts.DataDir == "" {
		return Launched{}
	}
	if _, err := os.Stat(statePath(opts.DataDir)); err != nil {
		// No update was ever staged: nothing to decide, nothing to create.
		return Launched{}
	}
	unlock, err := lock(opts.DataDir)
	if err != nil {
		log.Error("update slots: cannot lock; running the installed binary", "err", err)
		return Launched{}
	}
	locked := true
	defer func() {
		if locked {
			unlock()
		}
	}()
	s, err := load(opts.DataDir)
	if err != nil {
		log.Error("update slots: unusable state; running the installed binary", "err", err)
		return Launched{}
	}
	argv := append([]string(nil), opts.Args...)
	if len(argv) == 0 {
		argv = []string{""}
	}

	if t := s.Trial; t != nil {
		path := SlotPath(opts.DataDir, t.Slot)
		reason := ""
		switch {
		case t.Starts >= MaxStarts:
			reason = ReasonCrashLoop
		case !t.Deadline.IsZero() && now().After(t.Deadline):
			reason = ReasonWindowExpired
		case !isExecutable(path):
			reason = ReasonSlotMissing
		}
		if reason != "" {
			rollback(&s, reason, now())
			if err := save(opts.DataDir, s); err != nil {
				log.Error("update slots: saving the rollback failed", "err", err)
			}
			log.Warn("update trial rolled back", "version", t.Version, "slot", t.Slot, "reason", reason, "starts", t.Starts)
		} else {
			if t.Starts == 0 {
				t.StartedAt = now().UTC()
				t.Deadline = t.StartedAt.Add(t.Window())
			}
			t.Starts++
			if opts.Version != "" {
				s.InstalledVersion = opts.Version
			}
			// The start must be on disk before the exec: a trial that
			// crashes at once must still run out of starts.
			if err := save(opts.DataDir, s); err != nil {
				log.Error("update slots: cannot count the trial's start; not starting it", "version", t.Version, "err", err)
				s.Trial = nil // in memory only: go on with the active slot
			} else {
				log.Info("starting update trial", "version", t.Version, "slot", t.Slot, "start", t.Starts, "deadline", t.Deadline)
				unlock()
				locked = false
				argv[0] = path
				err := execFn(path, argv, withEnv(env, EnvSlot+"="+t.Slot, EnvTrial+"=1"))
				// Still here: the exec failed.
				log.Error("update slots: exec of the trial failed; rolling back", "path", path, "err", err)
				if unlock, err = lock(opts.DataDir); err != nil {
					log.Error("update slots: cannot lock; running the installed binary", "err", err)
					return Launched{}
				}
				locked = true
				if s, err = load(opts.DataDir); err != nil {
					log.Error("update slots: unusable state; running the installed binary", "err", err)
					return Launched{}
				}
				if s.Trial != nil {
					rollback(&s, ReasonExecFailed, now())
					if err := save(opts.DataDir, s); err != nil {
						log.Error("update slots: saving the rollback failed", "err", err)
					}
				}
			}
		}
	}

	if s.Active == "" {
		return Launched{}
	}
	if opts.Version != "" && s.InstalledVersion != "" && s.InstalledVersion != opts.Version && s.Trial == nil {
		log.Warn("update slots: the installed binary was replaced; running it instead of the slot",
			"installed_version", opts.Version, "was", s.InstalledVersion, "slot", s.Active, "slot_version", s.ActiveVersion)
		s.Active, s.ActiveVersion, s.InstalledVersion = "", "", opts.Version
		if err := save(opts.DataDir, s); err != nil {
			log.Error("update slots: saving the state failed", "err", err)
		}
		return Launched{}
	}
	path := SlotPath(opts.DataDir, s.Active)
	if !isExecutable(path) {
		log.Error("update slots: the active slot's binary is missing; running the installed binary", "path", path)
		return Launched{}
	}
	if self, err := os.Executable(); err == nil && sameFile(self, path) {
		return Launched{Slot: s.Active, Version: s.ActiveVersion}
	}
	unlock()
	locked = false
	argv[0] = path
	err = execFn(path, argv, withEnv(env, EnvSlot+"="+s.Active))
	log.Error("update slots: exec of the active slot failed; running the installed binary", "path", path, "err", err)
	return Launched{}
}

// child is Launch in a process exec'd from slot.
func child(dataDir, slot string, trial bool, log *slog.Logger) Launched {
	l := Launched{Slot: slot}
	s, err := load(dataDir)
	if err != nil {
		log.Error("update slots: unusable state", "err", err)
		return l
	}
	if t := s.Trial; trial && t != nil && t.Slot == slot {
		l.Version, l.Trial, l.Deadline, l.Window = t.Version, true, t.Deadline, t.Window()
		return l
	}
	if trial {
		log.Warn("update slots: started as a trial, but no trial is pending for this slot", "slot", slot)
	}
	if s.Active == slot {
		l.Version = s.ActiveVersion
	}
	return l
}

func lookupEnv(env []string, key string) string {
	v := ""
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val // the last one wins, as in os.Getenv
		}
	}
	return v
}

// withEnv returns env without EnvSlot and EnvTrial, plus add.
func withEnv(env []string, add ...string) []string {
	out := make([]string, 0, len(env)+len(add))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if k != EnvSlot && k != EnvTrial {
			out = append(out, kv)
		}
	}
	return append(out, add...)
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 && fi.Size() > 0
}

func sameFile(a, b string) bool {
	if a == b {
		return true
	}
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(filepath.Clean(b))
	return err == nil && os.SameFile(fa, fb)
}
