package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"

	"github.com/outpost-edge/outpost/internal/testutil"
)

// startProxy runs an in-process toxiproxy between 127.0.0.1:0 and upstream
// and returns it; its Listen field holds the bound address.
func startProxy(t *testing.T, upstream string) *toxiproxy.Proxy {
	t.Helper()
	// The toxics log through zerolog's global logger; keep test output to
	// real problems.
	zerolog.SetGlobalLevel(zerolog.ErrorLevel)
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "mqtt", "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("starting toxiproxy: %v", err)
	}
	t.Cleanup(p.Stop)
	return p
}

// addToxic adds a toxic given as toxiproxy's JSON (name, type, stream,
// attributes).
func addToxic(t *testing.T, p *toxiproxy.Proxy, js string) {
	t.Helper()
	if _, err := p.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
		t.Fatalf("adding toxic %s: %v", js, err)
	}
}

// TestLinkFaults runs the agent through a proxy that breaks the link to
// the hub's broker in several ways, one after the other; after each fault
// heals, the hub must hold every point the agent committed exactly once:
// seqs 1..N (N the agent's next seq - 1) and, since the agent is never
// killed, the k-th counter point holds the counter's k-th value. A second
// command printing 5 points every 20 ms adds volume.
func TestLinkFaults(t *testing.T) {
	h := startHub(t)
	proxy := startProxy(t, h.mqtt)
	counter := newCounterSource(t)
	mqtt := map[string]any{"url": "mqtt://" + proxy.Listen}
	mergeYAML(mqtt, fastReconnect)
	a := h.joinAgent(t, "flaky-1", map[string]any{
		"mqtt":      mqtt,
		"telemetry": map[string]any{"qos": 1},
		"sources": []any{
			counter.config("counter", 100*time.Millisecond),
			counter.loadConfig("load", 20*time.Millisecond, 5),
		},
		"spool": bigSpool,
	})
	p := a.start(t)
	testutil.Eventually(t, 30*time.Second, func() error {
		if n := len(h.points(t, a.id)); n < 10 {
			return fmt.Errorf("%d points stored before any fault", n)
		}
		return nil
	})

	// effect checks that a fault did disturb the link: the most points
	// the spool held during it, and the connections made during the fault
	// and recovery.
	type effect func(maxDepth, connects float64) error
	backlogged := func(min float64) effect {
		return func(maxDepth, _ float64) error {
			if maxDepth < min {
				return fmt.Errorf("the spool held at most %v points during the fault, want ≥ %v", maxDepth, min)
			}
			return nil
		}
	}
	reconnected := func(min float64) effect {
		return func(maxDepth, connects float64) error {
			if connects < min {
				return fmt.Errorf("%v connections during the fault and recovery, want ≥ %v", connects, min)
			}
			return backlogged(50)(maxDepth, connects)
		}
	}
	var flapping chan struct{}
	scenarios := []struct {
		name   string
		apply  func(t *testing.T)
		heal   func(t *testing.T)
		effect effect
	}{
		{"down", func(t *testing.T) { proxy.Stop() }, func(t *testing.T) {
			if err := proxy.Start(); err != nil {
				t.Fatalf("restarting the proxy on %s: %v", proxy.Listen, err)
			}
		}, reconnected(1)},
		// Connections are reset again and again, alternately swallowing
		// what the agent sends (a PUBLISH lost) and what the hub sends (a
		// PUBACK lost after the hub stored the batch, so the agent must
		// send it again and the hub must store it once).
		{"reset_peer", func(t *testing.T) {
			flapping = make(chan struct{})
			ready := make(chan struct{})
			go func() {
				defer close(ready)
				on := time.NewTicker(250 * time.Millisecond)
				defer on.Stop()
				for i := 0; ; i++ {
					stream := []string{"downstream", "upstream"}[i%2]
					_, _ = proxy.Toxics.AddToxicJson(strings.NewReader(`{"name":"reset","type":"reset_peer","stream":"` + stream + `","attributes":{"timeout":0}}`))
					select {
					case <-flapping:
						_ = proxy.Toxics.RemoveToxic(context.Background(), "reset")
						return
					case <-on.C:
					}
					_ = proxy.Toxics.RemoveToxic(context.Background(), "reset")
					select {
					case <-flapping:
						return
					case <-on.C:
					}
				}
			}()
			t.Cleanup(func() {
				select {
				case <-flapping:
				default:
					close(flapping)
				}
				<-ready
			})
		}, func(t *testing.T) { close(flapping) }, reconnected(3)},
		{"latency", func(t *testing.T) {
			addToxic(t, proxy, `{"name":"lat_up","type":"latency","stream":"upstream","attributes":{"latency":200}}`)
			addToxic(t, proxy, `{"name":"lat_down","type":"latency","stream":"downstream","attributes":{"latency":200}}`)
		}, removeToxic(proxy, "lat_up", "lat_down"), backlogged(50)},
		// The test's load takes about 2 KB/s on the wire (compact
		// protobuf), so 1 KB/s makes the link the bottleneck.
		{"bandwidth", func(t *testing.T) {
			addToxic(t, proxy, `{"name":"bw_up","type":"bandwidth","stream":"upstream","attributes":{"rate":1}}`)
			addToxic(t, proxy, `{"name":"bw_down","type":"bandwidth","stream":"downstream","attributes":{"rate":1}}`)
		}, removeToxic(proxy, "bw_up", "bw_down"), backlogged(200)},
		// A black hole: the connection stays open but nothing passes; only
		// the MQTT keepalive notices.
		{"blackhole", func(t *testing.T) {
			addToxic(t, proxy, `{"name":"hole","type":"timeout","stream":"upstream","attributes":{"timeout":0}}`)
		}, removeToxic(proxy, "hole"), reconnected(1)},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			counter.resume(t)
			before := len(h.allPoints(t, a.id))
			sc.apply(t)
			// The agent runs with the fault for a while; the spool depth
			// is sampled meanwhile to show the fault had an effect.
			mFault, err := a.metrics()
			if err != nil {
				t.Fatal(err)
			}
			faulty := time.NewTimer(3 * time.Second)
			sample := time.NewTicker(50 * time.Millisecond)
			maxDepth := 0.0
			for wait := true; wait; {
				select {
				case <-faulty.C:
					wait = false
				case <-sample.C:
					if m, err := a.metrics(); err == nil {
						maxDepth = max(maxDepth, m["outpost_agent_spool_points"])
					}
				}
			}
			sample.Stop()
			sc.heal(t)
			m0, err := a.metrics()
			if err != nil {
				t.Fatal(err)
			}
			last := counter.stop(t)
			m := waitDrained(t, a, time.Minute)
			pts := h.allPoints(t, a.id)
			r := checkSeqs(pts, "counter")
			hm, err := scrape(h.url + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d points stored during the fault and recovery; %d in all, counter at %d; spool depth up to %v during the fault; %v connects; hub saw %v redelivered points so far",
				r.n-before, r.n, last, maxDepth, m["outpost_agent_mqtt_connects_total"]-mFault["outpost_agent_mqtt_connects_total"],
				hm[`outpost_ingest_points_total{result="duplicate"}`])
			if len(r.duplicates) > 0 {
				t.Errorf("seqs stored twice: %v", r.duplicates)
			}
			next, err := metric(m, "outpost_agent_spool_next_seq")
			if err != nil {
				t.Fatal(err)
			}
			if r.n == 0 || r.minSeq != 1 || r.gapCount > 0 || r.maxSeq != uint64(next)-1 {
				t.Errorf("stored %d points, seqs %d..%d with %d missing (first at %v); want exactly 1..%v",
					r.n, r.minSeq, r.maxSeq, r.gapCount, r.gaps, next-1)
			}
			if len(r.disorder) > 0 {
				t.Errorf("counter values do not strictly increase with seq: %v", r.disorder)
			}
			// A counter value is missing only if a read timed out after the
			// command counted (the read fails, so it is a source error).
			if missing := int(last) - r.valued; missing < 0 || float64(missing) > m0["outpost_agent_source_errors_total"] {
				t.Errorf("counter produced %d values, %d stored, with %v failed reads", last, r.valued, m0["outpost_agent_source_errors_total"])
			}
			if err := sc.effect(maxDepth, m["outpost_agent_mqtt_connects_total"]-mFault["outpost_agent_mqtt_connects_total"]); err != nil {
				t.Errorf("the fault had no visible effect: %v", err)
			}
			if dropped, err := metric(m, "outpost_agent_spool_dropped_total"); err != nil || dropped != 0 {
				t.Errorf("spool dropped %v points (%v)", dropped, err)
			}
		})
	}
	p.stop(t)
	h.proc.stop(t)
}

// removeToxic returns a heal function removing the named toxics.
func removeToxic(p *toxiproxy.Proxy, names ...string) func(t *testing.T) {
	return func(t *testing.T) {
		t.Helper()
		for _, n := range names {
			if err := p.Toxics.RemoveToxic(context.Background(), n); err != nil {
				t.Fatalf("removing toxic %s: %v", n, err)
			}
		}
	}
}
