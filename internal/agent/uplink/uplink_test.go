package uplink

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/internal/agent/brokertest"
	"github.com/outpost-edge/outpost/internal/agent/spool"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const device = "pump-7"

var telemetryTopic = protocol.TelemetryTopic(device)

// newSpool opens a spool in a temporary directory and runs its writer
// until the test ends (after the uplink, whose cleanup runs first).
func newSpool(t *testing.T) *spool.Spool {
	t.Helper()
	sp, err := spool.Open(spool.Options{Path: filepath.Join(t.TempDir(), "spool.db"), CommitInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sp.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("spool Run = %v", err)
		}
		_ = sp.Close()
	})
	return sp
}

// add stores n points valued from v on, with increasing timestamps.
func add(t *testing.T, sp *spool.Spool, v, n int) {
	t.Helper()
	ts := time.Now().UnixMilli()
	ps := make([]*outpostv1.Point, n)
	for i := range ps {
		ps[i] = &outpostv1.Point{Sensor: "temperature", TsUnixMs: ts, Value: &outpostv1.Point_Num{Num: float64(v + i)}}
	}
	if err := sp.Append(context.Background(), ps); err != nil {
		t.Fatal(err)
	}
}

type running struct {
	u      *Uplink
	sp     *spool.Spool
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned
	err    error         // Run's result, set before done is closed
}

// stop cancels Run and checks it returns nil.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		if r.err != nil {
			t.Fatalf("Run = %v", r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of cancel")
	}
}

func testConfig(url string, qos byte) Config {
	return Config{
		DeviceID:       device,
		URL:            url,
		Password:       "secret",
		KeepAlive:      5 * time.Second,
		BackoffMin:     10 * time.Millisecond,
		BackoffMax:     50 * time.Millisecond,
		QoS:            qos,
		BatchMaxPoints: 2,
		AgentVersion:   "1.2.3",
	}
}

func start(t *testing.T, sp *spool.Spool, cfg Config) *running {
	t.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	u, err := New(cfg, sp)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{u: u, sp: sp, cancel: cancel, done: make(chan struct{})}
	go func() {
		r.err = u.Run(ctx)
		close(r.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// batches decodes the telemetry messages, failing the test on anything
// the hub would refuse.
func batches(t *testing.T, msgs []brokertest.Message) []*outpostv1.TelemetryBatch {
	t.Helper()
	var out []*outpostv1.TelemetryBatch
	for _, m := range msgs {
		if m.ContentType != protocol.ContentTypeProtobuf {
			t.Fatalf("content type = %q, want %q", m.ContentType, protocol.ContentTypeProtobuf)
		}
		b, err := protocol.DecodeTelemetry(m.Payload, m.ContentType, device, time.Now())
		if err != nil {
			t.Fatalf("decoding telemetry: %v", err)
		}
		out = append(out, b)
	}
	return out
}

// firsts returns the seq_first of each batch the broker got.
func firsts(t *testing.T, b *brokertest.Broker) []uint64 {
	t.Helper()
	var out []uint64
	for _, bt := range batches(t, b.Published(telemetryTopic)) {
		out = append(out, bt.GetSeqFirst())
	}
	return out
}

// pointSeqs returns every point's seq, in arrival order.
func pointSeqs(t *testing.T, b *brokertest.Broker) []uint64 {
	t.Helper()
	var out []uint64
	for _, bt := range batches(t, b.Published(telemetryTopic)) {
		for i, p := range bt.GetPoints() {
			seq := bt.GetSeqFirst() + uint64(i)
			if p.GetNum() != float64(seq) {
				t.Fatalf("seq %d carries value %v; the test stores value seq-1+1 at each seq", seq, p.GetNum())
			}
			out = append(out, seq)
		}
	}
	return out
}

func status(t *testing.T, b *brokertest.Broker) *outpostv1.Status {
	t.Helper()
	m, ok := b.Retained(protocol.StatusTopic(device))
	if !ok {
		return nil
	}
	if !m.Retain {
		t.Fatal("status message is not retained")
	}
	s, err := protocol.DecodeStatus(m.Payload)
	if err != nil {
		t.Fatalf("decoding status: %v", err)
	}
	return s
}

func waitFirsts(t *testing.T, b *brokertest.Broker, want []uint64) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() error {
		if got := firsts(t, b); !slices.Equal(got, want) {
			return fmt.Errorf("broker got batches %v, want %v", got, want)
		}
		return nil
	})
}

func waitEmpty(t *testing.T, sp *spool.Spool) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() error {
		if n := sp.Stats().Points; n != 0 {
			return fmt.Errorf("spool still holds %d points", n)
		}
		return nil
	})
}

// checkLanes checks that seqs (one broker's arrivals) are two increasing
// runs: the backlog below mark and the live points from mark on.
func checkLanes(t *testing.T, seqs []uint64, mark uint64) {
	t.Helper()
	var backlog, live []uint64
	for _, s := range seqs {
		if s < mark {
			backlog = append(backlog, s)
		} else {
			live = append(live, s)
		}
	}
	if !slices.IsSorted(backlog) || !slices.IsSorted(live) {
		t.Errorf("a lane is out of order (mark %d): backlog %v, live %v", mark, backlog, live)
	}
}

func TestPublishesTelemetryAndPresence(t *testing.T) {
	b := brokertest.Start(t, "")
	sp := newSpool(t)
	r := start(t, sp, testConfig(b.URL, 1))
	testutil.Eventually(t, 5*time.Second, func() error {
		if s := status(t, b); s.GetState() != outpostv1.Status_STATE_ONLINE || s.GetAgentVersion() != "1.2.3" || s.GetTsUnixMs() == 0 || s.GetSpool() == nil {
			return fmt.Errorf("retained status = %v, want online with version, time and spool stats", s)
		}
		return nil
	})
	add(t, sp, 1, 5) // seqs 1..5, published live as batches of at most 2
	testutil.Eventually(t, 10*time.Second, func() error {
		if got := pointSeqs(t, b); !slices.Equal(got, []uint64{1, 2, 3, 4, 5}) {
			return fmt.Errorf("broker got seqs %v", got)
		}
		return nil
	})
	for _, m := range b.Published(telemetryTopic) {
		if m.QoS != 1 || m.ClientID != device {
			t.Errorf("telemetry published with QoS %d by %q, want QoS 1 by %q", m.QoS, m.ClientID, device)
		}
	}
	waitEmpty(t, sp)
	testutil.Eventually(t, 5*time.Second, func() error {
		if st := r.u.Stats(); st.PointsAcked != 5 || st.BatchesAcked < 3 || !st.Connected || st.LastPublish.IsZero() || st.PointsBacklog != 0 {
			return fmt.Errorf("stats = %+v", st)
		}
		return nil
	})

	// A clean stop leaves a retained offline status behind, with the
	// spool's final state.
	r.stop(t)
	s := status(t, b)
	if s.GetState() != outpostv1.Status_STATE_OFFLINE || s.GetSpool() == nil || s.GetSpool().GetPoints() != 0 {
		t.Errorf("retained status after stop = %v, want offline with an empty spool", s)
	}
	if r.u.Stats().Connected {
		t.Error("Connected after Run returned")
	}
}

func TestZstdCompressedBatches(t *testing.T) {
	b := brokertest.Start(t, "")
	sp := newSpool(t)
	cfg := testConfig(b.URL, 1)
	cfg.Zstd = true
	r := start(t, sp, cfg)
	add(t, sp, 1, 4)
	testutil.Eventually(t, 10*time.Second, func() error {
		if got := pointSeqs(t, b); !slices.Equal(got, []uint64{1, 2, 3, 4}) {
			return fmt.Errorf("broker got seqs %v", got)
		}
		return nil
	})
	for _, m := range b.Published(telemetryTopic) {
		if !protocol.IsZstd(m.Payload) {
			t.Errorf("payload %x is not a zstd frame", m.Payload)
		}
	}
	r.stop(t)
}

func TestStatusIsRefreshedWithSpoolStats(t *testing.T) {
	b := brokertest.Start(t, "")
	sp := newSpool(t)
	cfg := testConfig(b.URL, 1)
	cfg.StatusInterval = 20 * time.Millisecond
	cfg.DrainRate = 0.5 // points per second: the backlog below stays
	r := start(t, sp, cfg)
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := r.u.Stats().StatusSent; n < 4 {
			return fmt.Errorf("%d statuses sent, want the birth and periodic refreshes", n)
		}
		return nil
	})
	// Points pile up unsent while the broker is gone, and the next
	// connection reports them.
	b.Close()
	testutil.Eventually(t, 5*time.Second, func() error {
		if r.u.Stats().Connected {
			return fmt.Errorf("still connected")
		}
		return nil
	})
	add(t, sp, 1, 7)
	if st := r.u.Stats(); st.Connected {
		t.Fatal("connected to a closed broker")
	}
	// The slow drain keeps points waiting when the next connection's
	// birth message reports them.
	b2 := brokertest.Start(t, b.Addr)
	testutil.Eventually(t, 5*time.Second, func() error {
		s := status(t, b2)
		if s.GetState() != outpostv1.Status_STATE_ONLINE || s.GetSpool() == nil {
			return fmt.Errorf("status = %v", s)
		}
		if ss := s.GetSpool(); ss.GetPoints() == 0 || ss.GetOldestUnixMs() == 0 || ss.GetBytes() == 0 {
			return fmt.Errorf("spool stats = %v, want the waiting points' number, age and size", ss)
		}
		return nil
	})
}

func TestLastWillOnLostConnection(t *testing.T) {
	b := brokertest.Start(t, "")
	r := start(t, newSpool(t), testConfig(b.URL, 1))
	testutil.Eventually(t, 5*time.Second, func() error {
		if s := status(t, b); s.GetState() != outpostv1.Status_STATE_ONLINE {
			return fmt.Errorf("status = %v, want online", s)
		}
		return nil
	})
	if err := b.Kick(device); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		wills := b.Wills()
		if len(wills) != 1 {
			return fmt.Errorf("%d wills sent, want 1", len(wills))
		}
		s, err := protocol.DecodeStatus(wills[0].Payload)
		if err != nil || s.GetState() != outpostv1.Status_STATE_OFFLINE || !wills[0].Retain || wills[0].Topic != protocol.StatusTopic(device) {
			return fmt.Errorf("will = %+v (%v, %v), want a retained offline status", wills[0], s, err)
		}
		return nil
	})
	// The agent reconnects and announces itself again.
	testutil.Eventually(t, 5*time.Second, func() error {
		if st := r.u.Stats(); st.Connects < 2 {
			return fmt.Errorf("connects = %d, want 2", st.Connects)
		}
		if s := status(t, b); s.GetState() != outpostv1.Status_STATE_ONLINE {
			return fmt.Errorf("status = %v, want online again", s)
		}
		return nil
	})
}

// TestHubDownThenBackDeliversEverything stops the broker while points keep
// coming, then starts a new one on the same address: every point arrives,
// each lane in order, and the spool empties.
func TestHubDownThenBackDeliversEverything(t *testing.T) {
	b1 := brokertest.Start(t, "")
	sp := newSpool(t)
	r := start(t, sp, testConfig(b1.URL, 1))
	next := 1
	put := func(n int) {
		add(t, sp, next, n)
		next += n
	}
	put(5)
	waitEmpty(t, sp)

	put(3) // some of these may be in flight when the broker goes
	b1.Close()
	testutil.Eventually(t, 5*time.Second, func() error {
		if r.u.Stats().Connected {
			return fmt.Errorf("still connected")
		}
		return nil
	})
	for range 10 {
		put(2) // stored while offline
	}
	if n := sp.Stats().Points; n < 20 {
		t.Fatalf("spool holds %d points while the hub is down, want at least 20", n)
	}

	b2 := brokertest.Start(t, b1.Addr)
	waitEmpty(t, sp)
	put(4) // live after the reconnect
	waitEmpty(t, sp)

	got1, got2 := pointSeqs(t, b1), pointSeqs(t, b2)
	if !slices.IsSorted(got1) {
		t.Errorf("first broker received seqs out of order: %v", got1)
	}
	checkLanes(t, got2, r.u.Stats().LiveMark)
	all := slices.Compact(slices.Sorted(slices.Values(append(got1, got2...))))
	want := make([]uint64, next-1)
	for i := range want {
		want[i] = uint64(i + 1)
	}
	if !slices.Equal(all, want) {
		t.Errorf("brokers received %v + %v, want every one of 1..%d", got1, got2, next-1)
	}
	// A batch in flight during the outage may reach both brokers (the hub
	// drops the duplicate by seq), but no broker gets one twice.
	for i, got := range [][]uint64{got1, got2} {
		if len(slices.Compact(slices.Sorted(slices.Values(got)))) != len(got) {
			t.Errorf("broker %d received a seq twice: %v", i+1, got)
		}
	}
	if s := status(t, b2); s.GetState() != outpostv1.Status_STATE_ONLINE {
		t.Errorf("second broker's retained status = %v, want online", s)
	}
	if st := r.u.Stats(); st.Connects != 2 || st.BatchesRejected != 0 || st.PointsBacklog < 20 {
		t.Errorf("stats = %+v, want 2 connects, no rejections, the backlog delivered", st)
	}
}

// TestBacklogDrainsAtRateWhileLiveFlows builds a backlog while the hub is
// down; after the connect the backlog drains at the drain rate while new
// points go out as they are stored.
func TestBacklogDrainsAtRateWhileLiveFlows(t *testing.T) {
	b := brokertest.Start(t, "")
	b.Close() // the hub is down
	sp := newSpool(t)
	const backlog, rate, batch = 1500, 1500.0, 100
	for i := 0; i < backlog; i += 500 {
		add(t, sp, 1+i, 500)
	}
	cfg := testConfig(b.URL, 1)
	cfg.BatchMaxPoints = batch
	cfg.DrainRate = rate
	r := start(t, sp, cfg)

	b2 := brokertest.Start(t, b.Addr)
	began := time.Now()
	testutil.Eventually(t, 5*time.Second, func() error {
		if st := r.u.Stats(); !st.Draining || st.LiveMark != backlog+1 {
			return fmt.Errorf("stats = %+v, want draining below %d", st, backlog+1)
		}
		return nil
	})
	// Live points while the backlog drains.
	for i := range 5 {
		add(t, sp, backlog+1+i, 1)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		got := pointSeqs(t, b2)
		if !slices.Contains(got, backlog+5) {
			return fmt.Errorf("live points not delivered yet")
		}
		return nil
	})
	if !r.u.Stats().Draining {
		t.Fatalf("the backlog was drained before the live points arrived (took %s): no rate limit?", time.Since(began))
	}
	waitEmpty(t, sp)
	took := time.Since(began)
	// The first batch comes from the limiter's burst; the rest is paced.
	least := time.Second * (backlog - batch) / time.Duration(rate)
	if took < least {
		t.Errorf("the backlog of %d points drained in %s; at %v points/s it takes at least %s", backlog, took, rate, least)
	}
	got := pointSeqs(t, b2)
	checkLanes(t, got, backlog+1)
	if len(got) != backlog+5 || len(slices.Compact(slices.Sorted(slices.Values(got)))) != backlog+5 {
		t.Errorf("broker got %d points, want each of the %d once", len(got), backlog+5)
	}
	// Live points arrived in the middle of the backlog, not after it.
	lastBacklog := slices.Index(got, backlog)
	firstLive := slices.Index(got, backlog+1)
	if firstLive > lastBacklog {
		t.Errorf("the first live point arrived at position %d, after the whole backlog (%d)", firstLive, lastBacklog)
	}
	if st := r.u.Stats(); st.PointsBacklog != backlog || st.Draining {
		t.Errorf("stats = %+v, want the %d backlog points counted and the drain over", st, backlog)
	}
	t.Logf("backlog of %d points drained in %s at a limit of %v points/s", backlog, took.Round(time.Millisecond), rate)
}

func TestRefusedBatchIsDeletedAndCounted(t *testing.T) {
	b := brokertest.Start(t, "")
	var offered atomic.Int32 // how often the batch from seq 3 reached the broker
	b.Reject(func(m brokertest.Message) byte {
		if m.Topic != telemetryTopic {
			return 0
		}
		bt, err := protocol.DecodeTelemetry(m.Payload, m.ContentType, device, time.Now())
		if err == nil && bt.GetSeqFirst() == 3 {
			offered.Add(1)
			return 0x99 // payload format invalid
		}
		return 0
	})
	sp := newSpool(t)
	add(t, sp, 1, 6) // batches 1-2, 3-4, 5-6
	r := start(t, sp, testConfig(b.URL, 1))
	waitFirsts(t, b, []uint64{1, 5})
	waitEmpty(t, sp)
	testutil.Eventually(t, 5*time.Second, func() error {
		if st := r.u.Stats(); st.BatchesRejected != 1 || st.PointsRejected != 2 || st.BatchesAcked != 2 || st.BatchesSent != 3 || st.Retries != 0 {
			return fmt.Errorf("stats = %+v, want 1 refused (2 points), 2 acked, 3 sent, no retries", st)
		}
		return nil
	})
	if n := offered.Load(); n != 1 {
		t.Errorf("the refused batch reached the broker %d times, want 1", n)
	}
}

func TestQoS(t *testing.T) {
	for _, qos := range []byte{0, 2} {
		t.Run(fmt.Sprint("QoS ", qos), func(t *testing.T) {
			b := brokertest.Start(t, "")
			sp := newSpool(t)
			start(t, sp, testConfig(b.URL, qos))
			add(t, sp, 1, 1)
			waitFirsts(t, b, []uint64{1})
			if m := b.Published(telemetryTopic)[0]; m.QoS != qos {
				t.Errorf("QoS = %d, want %d", m.QoS, qos)
			}
			waitEmpty(t, sp)
		})
	}
}

func TestStopGrace(t *testing.T) {
	for _, tt := range []struct {
		name      string
		grace     time.Duration
		wantEmpty bool
	}{{"grace delivers what waits", 10 * time.Second, true}, {"no grace leaves it in the spool", 0, false}} {
		t.Run(tt.name, func(t *testing.T) {
			b := brokertest.Start(t, "")
			b.Close()
			sp := newSpool(t)
			add(t, sp, 1, 400)
			cfg := testConfig(b.URL, 1)
			cfg.BatchMaxPoints, cfg.DrainRate, cfg.StopGrace = 50, 1000, tt.grace
			r := start(t, sp, cfg)
			b2 := brokertest.Start(t, b.Addr)
			testutil.Eventually(t, 5*time.Second, func() error {
				if !b2.Connected(device) || len(b2.Published(telemetryTopic)) == 0 {
					return fmt.Errorf("not publishing yet")
				}
				return nil
			})
			r.stop(t) // the backlog takes about 350ms more at 1000 points/s
			if empty := sp.Stats().Points == 0; empty != tt.wantEmpty {
				t.Errorf("spool empty after stop = %v, want %v (%d points left)", empty, tt.wantEmpty, sp.Stats().Points)
			}
			if s := status(t, b2); s.GetState() != outpostv1.Status_STATE_OFFLINE {
				t.Errorf("status = %v, want offline", s)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	_, err := New(Config{DeviceID: "a/b", URL: "http://x", QoS: 3, BackoffMin: time.Second, BackoffMax: time.Millisecond, BatchMaxPoints: 5001, DrainRate: -1}, nil)
	if err == nil {
		t.Fatal("New = nil error")
	}
	for _, want := range []string{"device id", "scheme must be mqtt or tls", "QoS must be", "backoff max", "batch max points", "drain rate", "no spool"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
