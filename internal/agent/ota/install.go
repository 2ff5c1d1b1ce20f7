package ota

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/atomicfile"
)

// Limits of the file install handler.
const (
	// DefaultPostInstallTimeout applies when InstallFile gets timeout 0.
	DefaultPostInstallTimeout = 5 * time.Minute
	// postInstallTailLines is how many of the command's last output lines
	// an error reports.
	postInstallTailLines = 10
	// postInstallTailBytes bounds the output kept to find them.
	postInstallTailBytes = 4096
	// postInstallWaitDelay is how long Wait waits for the output pipes
	// after the process group was killed or the command exited.
	postInstallWaitDelay = 2 * time.Second
)

// InstallFile installs the verified file src at dest with mode: it copies
// src to a temporary file in dest's directory, fsyncs it, renames it over
// dest and fsyncs the directory, so dest is at any moment either the old
// file or the new one, whole. A failure before the rename leaves dest
// untouched.
//
// If postInstall is not empty it then runs postInstall[0] with the other
// elements as arguments (no shell), in its own process group, for at most
// timeout (0 means DefaultPostInstallTimeout); on timeout the whole group
// is killed. A failing command yields ReasonInstall with its exit code and
// last output lines; dest has been replaced by then.
func InstallFile(ctx context.Context, src, dest string, mode os.FileMode, postInstall []string, timeout time.Duration) error {
	if err := replaceFile(src, dest, mode); err != nil {
		return err
	}
	if len(postInstall) == 0 {
		return nil
	}
	return runPostInstall(ctx, postInstall, timeout)
}

// replaceFile is the atomic copy-and-rename part of InstallFile.
func replaceFile(src, dest string, mode os.FileMode) (err error) {
	if dest == "" || filepath.Base(dest) == "." || filepath.Base(dest) == string(filepath.Separator) {
		return newErr(ReasonInvalid, "installing: bad destination %q", dest)
	}
	in, err := os.Open(src)
	if err != nil {
		return newErr(ReasonIO, "installing: opening %s: %w", src, err)
	}
	defer in.Close()
	dir := filepath.Dir(dest)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(dest)+".ota-*")
	if err != nil {
		return newErr(ReasonIO, "installing %s: creating temporary file: %w", dest, err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, in); err != nil {
		return newErr(ReasonIO, "installing %s: copying: %w", dest, err)
	}
	if err := tmp.Chmod(mode.Perm()); err != nil {
		return newErr(ReasonIO, "installing %s: chmod: %w", dest, err)
	}
	if err := tmp.Sync(); err != nil {
		return newErr(ReasonIO, "installing %s: fsync: %w", dest, err)
	}
	if err := tmp.Close(); err != nil {
		return newErr(ReasonIO, "installing %s: closing: %w", dest, err)
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return newErr(ReasonIO, "installing %s: rename: %w", dest, err)
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		// The rename happened; only its durability is in doubt.
		return newErr(ReasonIO, "installing %s: syncing directory: %w", dest, err)
	}
	return nil
}

// runPostInstall runs the post-install command; see InstallFile.
func runPostInstall(ctx context.Context, argv []string, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultPostInstallTimeout
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, argv[0], argv[1:]...)
	out := &tailBuffer{max: postInstallTailBytes}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = postInstallWaitDelay
	ownProcessGroup(cmd)
	err := cmd.Run()
	if err == nil {
		return nil
	}
	code := -1
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	}
	what := fmt.Sprintf("exited with code %d", code)
	switch {
	case errors.Is(cctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
		what = fmt.Sprintf("timed out after %s and was killed", timeout)
	case ctx.Err() != nil:
		return &Error{Reason: ReasonCanceled, Err: fmt.Errorf("post-install %q: %w", argv[0], ctx.Err())}
	case code == -1:
		what = "failed"
	}
	return &Error{Reason: ReasonInstall, Err: fmt.Errorf("post-install %q %s: %w; last output:\n%s", argv[0], what, err, out.lastLines(postInstallTailLines))}
}

// tailBuffer keeps the last max bytes written to it. It is safe for
// concurrent use (stdout and stderr share it).
type tailBuffer struct {
	mu  sync.Mutex // guards buf
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

// lastLines returns at most n of the last lines written.
func (t *tailBuffer) lastLines(n int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(string(bytes.TrimRight(t.buf, "\n")), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
