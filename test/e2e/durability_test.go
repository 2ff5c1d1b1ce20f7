package e2e

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/testutil"
)

// longRun selects the long kill loop; OUTPOST_E2E_LONG=1 does the same.
var longRun = flag.Bool("long", false, "run the long variants of the durability tests (e.g. 500 agent kills)")

// killLoopIterations is how many times TestKillLoop kills the agent:
// OUTPOST_E2E_KILLS if set, else 500 in long mode and 50 otherwise.
func killLoopIterations(t *testing.T) int {
	t.Helper()
	if s := os.Getenv("OUTPOST_E2E_KILLS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("OUTPOST_E2E_KILLS=%q: want a positive number", s)
		}
		return n
	}
	if *longRun || os.Getenv("OUTPOST_E2E_LONG") == "1" {
		return 500
	}
	return 50
}

// testRand returns a random source seeded from OUTPOST_E2E_SEED, or from
// the clock; the seed is logged so that a failing schedule can be rerun.
func testRand(t *testing.T) *rand.Rand {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("OUTPOST_E2E_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("OUTPOST_E2E_SEED=%q: %v", s, err)
		}
	}
	t.Logf("random schedule seed %d (rerun it with OUTPOST_E2E_SEED=%d)", seed, seed)
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// fastReconnect are the MQTT settings of the durability and fault tests:
// the agent retries a lost connection within a fraction of a second, so a
// test does not wait for the default backoff.
var fastReconnect = map[string]any{
	"keepalive":       "1s",
	"connect_timeout": "2s",
	"backoff_min":     "20ms",
	"backoff_max":     "300ms",
}

// bigSpool is a spool that never fills up in these tests, with the default
// overflow policy spelled out: no point may be dropped.
var bigSpool = map[string]any{
	"max_bytes": 256 << 20,
	"overflow":  "drop_oldest",
}

// TestKillLoop kills the agent with SIGKILL at random moments, and every
// ten or so kills the hub too (sometimes while the agent runs, sometimes
// restarting it while the agent runs), then checks that every point the
// agent's spool committed is stored exactly once and in order: seqs are
// exactly 1..N (seq is assigned only to committed points, so a gap is a
// committed point lost) and the counter values strictly increase with seq
// (a point stored twice under two seqs, or out of order, breaks that).
//
// The main source is a command that increments a counter file, so the
// values are a known increasing sequence; values the agent read but had
// not committed when it was killed are legitimately missing, and their
// number is bounded by a few per kill. A second command adds 5 points per
// read for volume.
func TestKillLoop(t *testing.T) {
	iterations := killLoopIterations(t)
	rng := testRand(t)
	began := time.Now()
	h := newFixedHub(t)
	counter := newCounterSource(t)
	a := h.joinAgent(t, "counter-1", map[string]any{
		"mqtt":      fastReconnect,
		"telemetry": map[string]any{"qos": 1},
		"sources": []any{
			counter.config("counter", 20*time.Millisecond),
			counter.loadConfig("load", 20*time.Millisecond, 5),
		},
		"spool": bigSpool,
	})

	// restartMid is set when the hub is down and is to come back while the
	// next agent runs.
	restartMid := false
	lockouts := 0
	for i := range iterations {
		if h.down && !restartMid {
			h.restart(t)
		}
		runFor := time.Duration(50+rng.IntN(351)) * time.Millisecond
		var hubAction func()
		switch {
		case restartMid:
			hubAction = func() { h.restart(t) }
			restartMid = false
		case i%10 == 9:
			// Kill the hub while the agent runs; bring it back before the
			// next agent starts or while it runs.
			hubAction = func() { h.kill(t) }
			restartMid = rng.IntN(2) == 0
		}
		p := startUnlogged(t, nil, bin.agent, "run", "--data", a.dir)
		runTimer := time.NewTimer(runFor)
		if hubAction != nil {
			at := time.NewTimer(time.Duration(rng.Int64N(int64(runFor))))
			<-at.C
			hubAction()
		}
		<-runTimer.C
		if lockedOut(t, p, i) {
			lockouts++
		} else {
			kill(t, p)
		}
		if i%10 == 4 && !h.down && rng.IntN(3) == 0 {
			// Now and then the hub dies while no agent runs and comes
			// back while the next one does.
			h.kill(t)
			restartMid = true
		}
	}
	loopTime := time.Since(began)
	if lockouts > 0 {
		t.Errorf("%d of %d agents refused to start because the data directory was still locked after the previous agent was killed and reaped", lockouts, iterations)
	}

	// Start both cleanly, end the sequence and let the spool drain.
	h.restart(t)
	p := a.start(t)
	testutil.Eventually(t, 30*time.Second, func() error {
		if v := counter.value(t); v == 0 {
			return fmt.Errorf("the counter has not run yet")
		}
		return nil
	})
	last := counter.stop(t)
	m := waitDrained(t, a, 2*time.Minute)
	pts := h.allPoints(t, a.id)
	r := checkSeqs(pts, "counter")
	t.Logf("%d agent kills, %d hub kills in %s; counter reached %d, hub stores %d points (seq %d..%d, %d of the counter), %d counter values read but never committed",
		iterations, h.kills, loopTime.Round(time.Millisecond), last, r.n, r.minSeq, r.maxSeq, r.valued, int64(last)-int64(r.valued))

	if r.n == 0 {
		t.Fatal("the hub stores no points")
	}
	if len(r.duplicates) > 0 {
		t.Errorf("seqs stored twice: %v", r.duplicates)
	}
	if r.minSeq != 1 || r.gapCount > 0 {
		t.Errorf("committed points lost: seqs start at %d, %d missing between %d and %d, first gaps at %v",
			r.minSeq, r.gapCount, r.minSeq, r.maxSeq, r.gaps)
	}
	if next, err := metric(m, "outpost_agent_spool_next_seq"); err != nil || uint64(next) != r.maxSeq+1 {
		t.Errorf("agent's next seq is %v (%v): the hub's last stored seq %d is not the last committed", next, err, r.maxSeq)
	}
	if len(r.disorder) > 0 {
		t.Errorf("values do not strictly increase with seq (a point stored twice or out of order): %v", r.disorder)
	}
	if r.lastValue > float64(last) {
		t.Errorf("last stored value %v is beyond the counter's last value %d", r.lastValue, last)
	}
	// The clean agent at the end ran until the counter stopped, so the
	// newest values are all there.
	if r.lastValue < float64(last)-2 {
		t.Errorf("last stored value %v, but the counter reached %d while a clean agent ran", r.lastValue, last)
	}
	// A value is lost only when the agent dies between a command's output
	// and the commit, or the command itself dies (the agent killed, or a
	// read timed out, after it counted): a few per kill at the most.
	if lost := int64(last) - int64(r.valued); lost < 0 || lost > int64(4*iterations+20) {
		t.Errorf("%d values produced but not stored after %d agent kills: more than a few per kill", lost, iterations)
	}
	if dropped, err := metric(m, "outpost_agent_spool_dropped_total"); err != nil || dropped != 0 {
		t.Errorf("spool dropped %v points (%v); the spool is far larger than the test's data", dropped, err)
	}
	p.stop(t)
	h.stop(t)
}

// lockedOut reports whether agent p has exited by itself because its data
// directory was locked, and logs who holds the lock. It happened once in
// about 600 kills on a loaded machine, although the killed agent had been
// reaped: most likely a child the agent was starting (an exec source's
// command, between fork and exec) still shared the lock file's descriptor
// for a moment. The agent gives up at once instead of retrying for a
// while, so an immediate restart can fail; the loop tolerates that and
// counts it.
func lockedOut(t *testing.T, p *proc, iteration int) bool {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		out := p.output()
		if !lockErr.MatchString(out) {
			return false // kill reports it
		}
		t.Logf("iteration %d: the agent exited (%v): %s%s", iteration, err, strings.TrimSpace(out), lockHolders(out))
		return true
	default:
		return false
	}
}

// TestSpoolOverflow fills a tiny spool while the hub is down: the oldest
// points are dropped and counted, and once the hub is back the newest
// arrive, with (stored + dropped) equal to the number the agent committed.
func TestSpoolOverflow(t *testing.T) {
	h := newFixedHub(t)
	counter := newCounterSource(t)
	a := h.joinAgent(t, "overflow-1", map[string]any{
		"mqtt":      fastReconnect,
		"telemetry": map[string]any{"qos": 1},
		"sources":   []any{counter.config("counter", 20*time.Millisecond)},
		"spool":     map[string]any{"max_bytes": "4KiB", "overflow": "drop_oldest"},
	})
	// The agent never reaches the hub before its spool overflows.
	h.kill(t)
	p := a.start(t)
	testutil.Eventually(t, time.Minute, func() error {
		m, err := a.metrics()
		if err != nil {
			return err
		}
		dropped, err := metric(m, "outpost_agent_spool_dropped_total")
		if err != nil {
			return err
		}
		if dropped < 50 {
			return fmt.Errorf("%v points dropped so far", dropped)
		}
		return nil
	})
	last := counter.stop(t)
	before, err := a.metrics()
	if err != nil {
		t.Fatal(err)
	}
	h.restart(t)
	m := waitDrained(t, a, time.Minute)
	dropped, err := metric(m, "outpost_agent_spool_dropped_total")
	if err != nil {
		t.Fatal(err)
	}
	next, err := metric(m, "outpost_agent_spool_next_seq")
	if err != nil {
		t.Fatal(err)
	}
	committed := uint64(next) - 1
	if d0 := before["outpost_agent_spool_dropped_total"]; d0 != dropped {
		t.Errorf("the spool dropped %v points before the hub came back and %v after: draining must not drop", d0, dropped)
	}
	pts := h.allPoints(t, a.id)
	r := checkSeqs(pts, "counter")
	t.Logf("counter produced %d, agent committed %d, spool dropped %v, hub stores %d (seq %d..%d)", last, committed, dropped, r.n, r.minSeq, r.maxSeq)
	if len(r.duplicates) > 0 {
		t.Errorf("seqs stored twice: %v", r.duplicates)
	}
	if uint64(r.n)+uint64(dropped) != committed {
		t.Errorf("hub stores %d points and the spool dropped %v: want them to add up to the %d committed", r.n, dropped, committed)
	}
	// Dropping the oldest leaves the newest: one unbroken run of seqs
	// ending at the last committed point.
	if r.maxSeq != committed || r.gapCount > 0 || r.minSeq != uint64(dropped)+1 {
		t.Errorf("stored seqs %d..%d with %d gaps (first at %v); want %v..%d without gaps", r.minSeq, r.maxSeq, r.gapCount, r.gaps, dropped+1, committed)
	}
	if len(r.disorder) > 0 {
		t.Errorf("values do not strictly increase with seq: %v", r.disorder)
	}
	if r.lastValue > float64(last) || r.lastValue < float64(last)-1 {
		t.Errorf("newest stored value %v; the counter's last value was %d", r.lastValue, last)
	}
	if committed > last {
		t.Errorf("agent committed %d points but the counter produced only %d values", committed, last)
	}
	p.stop(t)
	h.stop(t)
}
