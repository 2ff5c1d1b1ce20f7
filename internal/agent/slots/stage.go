package slots

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/outpost-edge/outpost/internal/atomicfile"
	"github.com/outpost-edge/outpost/internal/execbusy"
)

// DefaultVerifyTimeout bounds `<binary> version` during Stage.
const DefaultVerifyTimeout = 10 * time.Second

// StageOptions tune Stage; the zero value is the default.
type StageOptions struct {
	// Window is the commit window of the trial; 0 means DefaultWindow.
	Window time.Duration
	// JobID is the caller's reference, copied to the trial's Result so
	// that a job handler finds its own outcome after the restart.
	JobID string
	// VerifyTimeout bounds `<binary> version`; 0 means DefaultVerifyTimeout.
	VerifyTimeout time.Duration
}

// Stage copies binary into the slot that is not active and records it as
// the pending trial of version. The copy is checked before anything
// points at it: it must execute on this machine (a binary for another
// architecture fails with ReasonExecFormat) and `<copy> version` must print
// version. On any failure state.json is untouched and the copy removed.
//
// Stage does not start the trial: the caller then makes the agent exit
// with RestartExitCode (return an error wrapping ErrRestart from the run
// command) and the next start runs it. Errors are *Error with a reason;
// a pending trial is ErrTrialPending.
func Stage(ctx context.Context, dataDir, binary, version string, opts StageOptions) error {
	if dataDir == "" || binary == "" || version == "" {
		return &Error{ReasonInvalid, errors.New("data directory, binary and version are required")}
	}
	if opts.Window < 0 || opts.VerifyTimeout < 0 {
		return &Error{ReasonInvalid, errors.New("negative window or verify timeout")}
	}
	if opts.VerifyTimeout == 0 {
		opts.VerifyTimeout = DefaultVerifyTimeout
	}
	if opts.Window == 0 {
		opts.Window = DefaultWindow
	}
	if err := ensureDir(slotsDir(dataDir), 0o700); err != nil {
		return &Error{ReasonIO, err}
	}
	unlock, err := lock(dataDir)
	if err != nil {
		return &Error{ReasonIO, err}
	}
	defer unlock()

	s, err := load(dataDir)
	if errors.Is(err, ErrCorruptState) {
		// Launch runs the installed binary with a corrupt state, so that
		// is what is active; the new state replaces the corrupt one.
		s, err = State{}, nil
	}
	if err != nil {
		return &Error{ReasonIO, err}
	}
	if s.Trial != nil {
		return &Error{ReasonTrialPending, fmt.Errorf("%w: version %s in slot %s", ErrTrialPending, s.Trial.Version, s.Trial.Slot)}
	}
	slot := other(s.Active)
	dir := filepath.Join(slotsDir(dataDir), slot)
	if err := ensureDir(dir, 0o755); err != nil {
		return &Error{ReasonIO, err}
	}
	removeTemps(dir)
	tmp, err := copyBinary(binary, dir)
	if err != nil {
		return &Error{ReasonIO, err}
	}
	keep := false
	defer func() {
		if !keep {
			_ = os.Remove(tmp)
		}
	}()
	if err := verify(ctx, tmp, version, opts.VerifyTimeout); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, BinaryName)); err != nil {
		return &Error{ReasonIO, fmt.Errorf("installing into slot %s: %w", slot, err)}
	}
	keep = true
	if err := atomicfile.SyncDir(dir); err != nil {
		return &Error{ReasonIO, err}
	}
	s.Trial = &Trial{Slot: slot, Version: version, JobID: opts.JobID, WindowMS: opts.Window.Milliseconds()}
	if err := save(dataDir, s); err != nil {
		return &Error{ReasonIO, err}
	}
	return nil
}

// removeTemps deletes copies left by a Stage that died.
func removeTemps(dir string) {
	stale, _ := filepath.Glob(filepath.Join(dir, tmpPrefix+"*"))
	for _, p := range stale {
		_ = os.Remove(p)
	}
}

// copyBinary copies src to a synced, executable temporary file in dir.
func copyBinary(src, dir string) (tmp string, err error) {
	in, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("opening new binary: %w", err)
	}
	defer in.Close()
	f, err := os.CreateTemp(dir, tmpPrefix+"*")
	if err != nil {
		return "", fmt.Errorf("creating slot file: %w", err)
	}
	tmp = f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err = io.Copy(f, in); err != nil {
		return "", fmt.Errorf("copying new binary: %w", err)
	}
	if err = f.Chmod(0o755); err != nil {
		return "", fmt.Errorf("making slot file executable: %w", err)
	}
	if err = f.Sync(); err != nil {
		return "", fmt.Errorf("syncing slot file: %w", err)
	}
	if err = f.Close(); err != nil {
		return "", fmt.Errorf("closing slot file: %w", err)
	}
	return tmp, nil
}

// verify runs `<bin> version` and checks it prints version.
func verify(ctx context.Context, bin, version string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var buf bytes.Buffer
	cmd, err := execbusy.Start(func() *exec.Cmd {
		buf.Reset()
		cmd := exec.CommandContext(ctx, bin, "version")
		cmd.Stdout, cmd.Stderr = &buf, &buf
		return cmd
	})
	if err == nil {
		err = cmd.Wait()
	}
	out := buf.Bytes()
	switch {
	case errors.Is(err, syscall.ENOEXEC):
		return &Error{ReasonExecFormat, fmt.Errorf("the new binary does not run on this machine: %w", err)}
	case ctx.Err() != nil:
		return &Error{ReasonVerifyFailed, fmt.Errorf("running `%s version`: %w", filepath.Base(bin), ctx.Err())}
	case err != nil:
		return &Error{ReasonVerifyFailed, fmt.Errorf("running `version` of the new binary: %w (output %q)", err, trim(out))}
	case !slices.Contains(strings.Fields(string(out)), version):
		return &Error{ReasonVersionMismatch, fmt.Errorf("the new binary reports %q, want version %s", trim(out), version)}
	}
	return nil
}

func trim(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
