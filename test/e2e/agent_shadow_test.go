package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/testutil"
)

// shadowDoc runs "outpost shadow get -o json"; it returns an error while
// the device has no shadow yet.
func (h *hubProc) shadowDoc(id string) (map[string]any, error) {
	cmd := exec.Command(bin.outpost, "shadow", "get", id, "-o", "json")
	cmd.Env = append(os.Environ(), h.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("outpost shadow get: %w: %s", err, stderr.String())
	}
	var m map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &m); err != nil {
		return nil, fmt.Errorf("outpost shadow get printed %q: %w", stdout.String(), err)
	}
	return m, nil
}

// lookup returns doc[path…], or nil.
func lookup(doc any, path ...string) any {
	for _, p := range path {
		m, ok := doc.(map[string]any)
		if !ok {
			return nil
		}
		doc = m[p]
	}
	return doc
}

// pointsBetween counts the stored points of sensor stamped in (from, to].
func pointsBetween(pts []storedPoint, sensor string, from, to time.Time) int {
	n := 0
	for _, p := range pts {
		if p.Sensor == sensor && p.TS.After(from) && !p.TS.After(to) {
			n++
		}
	}
	return n
}

// TestAgentShadowInterval: an operator changes a source's interval with
// `outpost shadow set`; the running agent applies it without a restart,
// reports it, and its telemetry at the hub arrives at the new rate.
func TestAgentShadowInterval(t *testing.T) {
	h := startHub(t)
	a := h.joinAgent(t, "pump-7", nil)
	agent := a.start(t)

	// The agent reports what it runs as soon as it is connected.
	testutil.Eventually(t, 30*time.Second, func() error {
		doc, err := h.shadowDoc("pump-7")
		if err != nil {
			return err
		}
		if got := lookup(doc, "state", "reported", "sources", "temperature", "interval"); got != "1s" {
			return fmt.Errorf("reported interval = %v", got)
		}
		return nil
	})

	// Measure the rate at 1s: a window of 4s of points at the hub.
	const window = 4 * time.Second
	var changeAt time.Time
	testutil.Eventually(t, 30*time.Second, func() error {
		pts := h.allPoints(t, "pump-7")
		first := time.Time{}
		for _, p := range pts {
			if p.Sensor == "temperature" && (first.IsZero() || p.TS.Before(first)) {
				first = p.TS
			}
		}
		if first.IsZero() || time.Since(first) < window+time.Second {
			return errors.New("not enough history at 1s yet")
		}
		changeAt = time.Now()
		return nil
	})
	out := h.cli(t, "shadow", "set", "pump-7", "sources.temperature.interval=200ms")
	if !strings.Contains(out, "shadow version") {
		t.Errorf("shadow set printed:\n%s", out)
	}

	var appliedAt time.Time
	testutil.Eventually(t, 30*time.Second, func() error {
		doc, err := h.shadowDoc("pump-7")
		if err != nil {
			return err
		}
		if got := lookup(doc, "state", "reported", "sources", "temperature", "interval"); got != "200ms" {
			return fmt.Errorf("reported interval = %v", got)
		}
		if d := lookup(doc, "state", "delta"); d != nil {
			return fmt.Errorf("delta = %v, want none", d)
		}
		if v, rv := lookup(doc, "version"), lookup(doc, "state", "reported", "outpost_version"); rv == nil || rv.(float64) >= v.(float64) {
			return fmt.Errorf("reported outpost_version %v, document version %v", rv, v)
		}
		appliedAt = time.Now()
		return nil
	})

	// Then a window at 200ms.
	var before, after int
	testutil.Eventually(t, 60*time.Second, func() error {
		pts := h.allPoints(t, "pump-7")
		before = pointsBetween(pts, "temperature", changeAt.Add(-window), changeAt)
		after = pointsBetween(pts, "temperature", appliedAt, appliedAt.Add(window))
		if time.Since(appliedAt) < window+2*time.Second {
			return fmt.Errorf("waiting for the window at 200ms: %d points so far", after)
		}
		return nil
	})
	if before < 2 || after < 3*before {
		t.Errorf("temperature points in %s: %d at 1s, %d at 200ms; want about 5 times more", window, before, after)
	}
	t.Logf("temperature points in %s: %d at 1s, %d at 200ms", window, before, after)

	// A value the agent cannot apply is reported with the reason, and the
	// interval in force stays.
	h.cli(t, "shadow", "set", "pump-7", "sources.temperature.interval=-1s")
	testutil.Eventually(t, 30*time.Second, func() error {
		doc, err := h.shadowDoc("pump-7")
		if err != nil {
			return err
		}
		if got := lookup(doc, "state", "reported", "outpost_errors"); jsonOf(got) != `{"sources.temperature.interval":"must be at least 10ms, got -1s"}` {
			return fmt.Errorf("reported outpost_errors = %s", jsonOf(got))
		}
		if got := lookup(doc, "state", "reported", "sources", "temperature", "interval"); got != "200ms" {
			return fmt.Errorf("reported interval = %v, want the 200ms in force", got)
		}
		return nil
	})

	// Deleting the key returns the interval to agent.yaml's value at once,
	// without a reconnect, and clears the error.
	h.cli(t, "shadow", "set", "pump-7", "sources.temperature.interval=null")
	testutil.Eventually(t, 30*time.Second, func() error {
		doc, err := h.shadowDoc("pump-7")
		if err != nil {
			return err
		}
		if got := lookup(doc, "state", "reported", "sources", "temperature", "interval"); got != "1s" {
			return fmt.Errorf("reported interval = %v, want agent.yaml's 1s", got)
		}
		if got := lookup(doc, "state", "reported", "outpost_errors"); got != nil {
			return fmt.Errorf("reported outpost_errors = %s, want none", jsonOf(got))
		}
		return nil
	})
	if n := strings.Count(agent.output(), "connected to broker"); n != 1 {
		t.Errorf("the agent reconnected; the deletion must arrive on the open connection:\n%s", tail(agent.output(), 20))
	}
	agent.stop(t)
}
