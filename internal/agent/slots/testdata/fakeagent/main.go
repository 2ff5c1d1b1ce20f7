// Command fakeagent stands in for outpost-agent in the slots tests: it
// prints its version, stages updates with slots.Stage and, as `run`,
// launches through slots.Launch and behaves as the file
// DATA/mode-<version> says. Every start appends "<version> <slot> <trial>"
// to DATA/runs.log.
//
//	fakeagent version
//	fakeagent stage DATA SRC VERSION WINDOW    exits with slots.RestartExitCode
//	fakeagent run DATA
//
// Modes (trial only; a committed or installed binary records its start and
// exits 0, as an agent that ran and was stopped):
//
//	good        healthy after 100 ms: commits, exits 0
//	commit-die  commits, then kills itself with SIGKILL
//	exit        exits 1 at once
//	crash       panics
//	never       never healthy: AwaitCommit expires, exits 75
//	hang        blocks until killed
//
// FAKE_KILL_AFTER_STAGE=1 makes stage kill itself with SIGKILL once Stage
// has returned.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/slots"
)

var version = "0.0.0"

func main() {
	if len(os.Args) < 2 {
		fail("usage: fakeagent version|stage|run")
	}
	switch os.Args[1] {
	case "version":
		fmt.Printf("outpost-agent %s (fake)\n", version)
	case "stage":
		if len(os.Args) != 6 {
			fail("usage: fakeagent stage DATA SRC VERSION WINDOW")
		}
		window, err := time.ParseDuration(os.Args[5])
		if err != nil {
			fail(err.Error())
		}
		if err := slots.Stage(context.Background(), os.Args[2], os.Args[3], os.Args[4], slots.StageOptions{Window: window}); err != nil {
			fail("reason=" + slots.ReasonOf(err) + ": " + err.Error())
		}
		if os.Getenv("FAKE_KILL_AFTER_STAGE") == "1" {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
		os.Exit(slots.RestartExitCode)
	case "run":
		if len(os.Args) != 3 {
			fail("usage: fakeagent run DATA")
		}
		runAgent(os.Args[2])
	default:
		fail("unknown command " + os.Args[1])
	}
}

func runAgent(data string) {
	start := time.Now()
	l := slots.Launch(slots.LaunchOptions{DataDir: data, Args: os.Args, Version: version})
	f, err := os.OpenFile(filepath.Join(data, "runs.log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		fail(err.Error())
	}
	slot := l.Slot
	if slot == "" {
		slot = "-"
	}
	fmt.Fprintf(f, "%s %s %t\n", version, slot, l.Trial)
	_ = f.Close()
	if !l.Trial {
		return
	}
	mode := "good"
	if b, err := os.ReadFile(filepath.Join(data, "mode-"+version)); err == nil {
		mode = strings.TrimSpace(string(b))
	}
	healthy := func() bool { return time.Since(start) > 100*time.Millisecond }
	switch mode {
	case "good", "commit-die":
		err := slots.AwaitCommit(context.Background(), data, l, healthy)
		if errors.Is(err, slots.ErrWindowExpired) {
			os.Exit(slots.TrialExpiredExitCode)
		}
		if err != nil {
			fail(err.Error())
		}
		if mode == "commit-die" {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	case "exit":
		os.Exit(1)
	case "crash":
		panic("fake crash")
	case "never":
		err := slots.AwaitCommit(context.Background(), data, l, func() bool { return false })
		if errors.Is(err, slots.ErrWindowExpired) {
			os.Exit(slots.TrialExpiredExitCode)
		}
		fail(fmt.Sprintf("AwaitCommit = %v, want ErrWindowExpired", err))
	case "hang":
		time.Sleep(time.Hour)
	default:
		fail("unknown mode " + mode)
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "fakeagent:", msg)
	os.Exit(1)
}
