package ota

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/testutil"
)

func TestInstallFile(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, []byte("new contents"), 0o600); err != nil {
		t.Fatal(err)
	}
	dest, _ := installed(t)
	marker := filepath.Join(dir, "ran")
	err := InstallFile(context.Background(), src, dest, 0o600,
		[]string{"sh", "-c", `cmp -s "$1" "$2" && touch "$3"`, "sh", src, dest, marker}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dest); string(got) != "new contents" {
		t.Fatalf("dest = %q", got)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("post-install did not see the new file: %v", err)
	}
}

func TestInstallFileFailureLeavesDest(t *testing.T) {
	tests := []struct {
		name string
		src  func(dir string) string
	}{
		{"missing source", func(dir string) string { return filepath.Join(dir, "nope") }},
		{"unreadable source", func(dir string) string { return dir }}, // a directory: the copy fails
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dest, old := installed(t)
			marker := filepath.Join(t.TempDir(), "ran")
			err := InstallFile(context.Background(), tt.src(t.TempDir()), dest, 0o644, []string{"touch", marker}, 0)
			assertReason(t, err, ReasonIO)
			assertUntouched(t, dest, old)
			entries, _ := os.ReadDir(filepath.Dir(dest))
			if len(entries) != 1 {
				t.Fatalf("temporary files left: %v", entries)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Fatal("post-install ran after a failed install")
			}
		})
	}
}

func TestPostInstallFailureReportsOutput(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := InstallFile(context.Background(), src, filepath.Join(dir, "dest"), 0o644,
		[]string{"sh", "-c", "for i in $(seq 1 12); do echo line$i; done; echo oops >&2; exit 3"}, time.Minute)
	assertReason(t, err, ReasonInstall)
	msg := err.Error()
	if !strings.Contains(msg, "exited with code 3") || !strings.Contains(msg, "line12\noops") || strings.Contains(msg, "line3\n") {
		t.Fatalf("error %q lacks the exit code or the last 10 output lines", msg)
	}
}

func TestPostInstallTimeoutKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(dir, "pid")
	start := time.Now()
	err := InstallFile(context.Background(), src, filepath.Join(dir, "dest"), 0o644,
		[]string{"sh", "-c", `sleep 60 & echo $! > "$1"; echo started; wait`, "sh", pidFile}, 300*time.Millisecond)
	assertReason(t, err, ReasonInstall)
	if !strings.Contains(err.Error(), "timed out") || !strings.Contains(err.Error(), "started") {
		t.Fatalf("error %q", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("InstallFile returned after %s", d)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	// The grandchild is gone (or a zombie waiting for a reaper).
	testutil.Eventually(t, 5*time.Second, func() error {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return nil
		}
		if f := bytes.Fields(stat[bytes.LastIndexByte(stat, ')')+1:]); len(f) > 0 && string(f[0]) == "Z" {
			return nil
		}
		return fmt.Errorf("process %d of the post-install command still runs", pid)
	})
}

func TestStoreTrustedRoot(t *testing.T) {
	r := newTestRepo(t)
	dir := t.TempDir()
	tufDir := filepath.Join(dir, "ota", "tuf")
	if err := os.MkdirAll(tufDir, 0o700); err != nil {
		t.Fatal(err)
	}
	// Metadata trusted from an earlier join must not survive a new one.
	stale := filepath.Join(tufDir, "timestamp.json")
	if err := os.WriteFile(stale, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := StoreTrustedRoot(dir, r.rootBytes); err != nil {
		t.Fatalf("StoreTrustedRoot: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(tufDir, "root.json"))
	if err != nil || !bytes.Equal(got, r.rootBytes) {
		t.Errorf("root.json = %q, %v; want the root given", got, err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale timestamp.json survived: %v", err)
	}
	if err := StoreTrustedRoot(dir, []byte(`{"signed":"nonsense"}`)); err == nil {
		t.Error("an invalid root was stored")
	}
	if err := StoreTrustedRoot(dir, nil); err != nil {
		t.Errorf("StoreTrustedRoot(nil): %v", err)
	}
	if _, err := os.Stat(tufDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a join without a root left %s behind: %v", tufDir, err)
	}
}
