package spool

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// crashDirEnv makes TestSpoolCrashChild run as the child of
// TestKillDuringAppends: it appends to the spool in this directory until
// it is killed.
const crashDirEnv = "OUTPOST_SPOOL_CRASH_DIR"

// TestSpoolCrashChild is the child process of TestKillDuringAppends. Eight
// goroutines append points valued round*1e9 + writer*1e6 + i and print
// "ok <value>" once Append has returned, that is once the point is
// durable; the parent kills the process with SIGKILL at some moment.
func TestSpoolCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("helper process of TestKillDuringAppends")
	}
	round, _ := strconv.Atoi(os.Getenv(crashDirEnv + "_ROUND"))
	s, err := Open(Options{Path: filepath.Join(dir, "spool.db"), CommitInterval: time.Millisecond, SeqBlock: 50})
	if err != nil {
		fmt.Println("open failed:", err)
		os.Exit(3)
	}
	go func() { _ = s.Run(context.Background()) }()
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				n := 1 + i%3
				ps := points(round*1_000_000_000+w*1_000_000+i*10, n)
				if err := s.Append(context.Background(), ps); err != nil {
					fmt.Println("append failed:", err)
					os.Exit(3)
				}
				mu.Lock()
				for _, p := range ps {
					fmt.Fprintf(out, "ok %d\n", int64(p.GetNum()))
				}
				_ = out.Flush()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// TestKillDuringAppends kills a process that appends from many goroutines
// with SIGKILL, several times over the same spool: every point whose
// Append had returned is there exactly once, and the seqs are exactly
// 1..N: none lost, none reused, none skipped.
func TestKillDuringAppends(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	dir := t.TempDir()
	acked := map[int64]bool{}
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSpoolCrashChild$")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, fmt.Sprintf("%s_ROUND=%d", crashDirEnv, round))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		lines := 0
		want := 300 + round*200 // kill at a different moment every round
		for sc.Scan() {
			line := sc.Text()
			v, ok := strings.CutPrefix(line, "ok ")
			if !ok {
				t.Logf("child: %s", line)
				continue
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("child printed %q", line)
			}
			acked[n] = true
			if lines++; lines == want {
				_ = cmd.Process.Kill() // SIGKILL, mid-append
			}
		}
		_ = cmd.Wait()
		if lines < want {
			t.Fatalf("round %d: the child printed %d points before it ended, want at least %d", round, lines, want)
		}

		s := openSpool(t, dir, Options{})
		got := readAll(t, s.Spool)
		if len(got) == 0 {
			t.Fatal("nothing stored")
		}
		// Nothing is ever deleted here, so the seqs are 1..N without gaps.
		checkDense(t, got, 1, s.NextSeq()-1)
		seen := map[int64]bool{}
		for _, p := range got {
			v := int64(p.value)
			if seen[v] {
				t.Fatalf("value %d stored twice", v)
			}
			seen[v] = true
		}
		missing := 0
		for v := range acked {
			if !seen[v] {
				missing++
			}
		}
		if missing > 0 {
			t.Fatalf("round %d: %d points whose Append returned are not in the spool", round, missing)
		}
		if st := s.Stats(); st.CorruptFile != "" {
			t.Fatalf("the spool was found corrupt after kill -9: %+v", st)
		}
		t.Logf("round %d: %d points acknowledged so far, %d stored (the rest were in flight at the kill)", round, len(acked), len(got))
		s.stop(t)
	}
}
