package execbusy

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A program still open for writing cannot start; Start keeps trying and
// succeeds once the writer closes it.
func TestStartWaitsForTheWriterToClose(t *testing.T) {
	p := filepath.Join(t.TempDir(), "prog")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("#!/bin/sh\nexit 0\n"); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command(p).Start(); !errors.Is(err, syscall.ETXTBSY) {
		t.Fatalf("starting a program open for writing: %v, want ETXTBSY", err)
	}
	go func() {
		time.Sleep(3 * Pause)
		_ = f.Close()
	}()
	builds := 0
	cmd, err := Start(func() *exec.Cmd { builds++; return exec.Command(p) })
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("program: %v", err)
	}
	if builds < 2 {
		t.Errorf("built %d commands, want a retry", builds)
	}
}

func TestStartGivesUpOnOtherErrors(t *testing.T) {
	builds := 0
	_, err := Start(func() *exec.Cmd { builds++; return exec.Command(filepath.Join(t.TempDir(), "missing")) })
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v, want not-exist", err)
	}
	if builds != 1 {
		t.Errorf("built %d commands, want 1", builds)
	}
}

func TestStartGivesUpAfterAttempts(t *testing.T) {
	p := filepath.Join(t.TempDir(), "prog")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	builds := 0
	if _, err := Start(func() *exec.Cmd { builds++; return exec.Command(p) }); !errors.Is(err, syscall.ETXTBSY) {
		t.Errorf("err = %v, want ETXTBSY", err)
	}
	if builds != Attempts {
		t.Errorf("built %d commands, want %d", builds, Attempts)
	}
}

func TestWriteFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "prog")
	if err := WriteFile(p, []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := exec.Command(p).Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Errorf("running the written program: %v, want exit 3", err)
	}
}
