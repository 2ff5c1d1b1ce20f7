package uplink

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/internal/agent/brokertest"
	"github.com/outpost-edge/outpost/internal/agent/queue"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const device = "pump-7"

var telemetryTopic = protocol.TelemetryTopic(device)

// batch returns a two-point batch numbered from seq.
func batch(seq uint64) *outpostv1.TelemetryBatch {
	ts := time.Now().UnixMilli()
	return &outpostv1.TelemetryBatch{SeqFirst: seq, Points: []*outpostv1.Point{
		{Sensor: "temperature", TsUnixMs: ts, Value: &outpostv1.Point_Num{Num: 21.5}},
		{Sensor: "humidity", TsUnixMs: ts, Value: &outpostv1.Point_Num{Num: 40}},
	}}
}

type running struct {
	u      *Uplink
	q      *queue.Memory
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

func start(t *testing.T, url string, qos byte) *running {
	t.Helper()
	q := queue.NewMemory(100)
	u, err := New(Config{
		DeviceID:     device,
		URL:          url,
		Password:     "secret",
		KeepAlive:    5 * time.Second,
		BackoffMin:   10 * time.Millisecond,
		BackoffMax:   50 * time.Millisecond,
		QoS:          qos,
		AgentVersion: "1.2.3",
		Logger:       slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}, q)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{u: u, q: q, cancel: cancel, done: make(chan struct{})}
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

// seqs decodes the telemetry messages and returns their seq_first values,
// failing the test on anything the hub would refuse.
func seqs(t *testing.T, msgs []brokertest.Message) []uint64 {
	t.Helper()
	var out []uint64
	for _, m := range msgs {
		if m.ContentType != protocol.ContentTypeProtobuf {
			t.Fatalf("content type = %q, want %q", m.ContentType, protocol.ContentTypeProtobuf)
		}
		b, err := protocol.DecodeTelemetry(m.Payload, m.ContentType, device, time.Now())
		if err != nil {
			t.Fatalf("decoding telemetry: %v", err)
		}
		out = append(out, b.GetSeqFirst())
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

func waitSeqs(t *testing.T, b *brokertest.Broker, want []uint64) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() error {
		if got := seqs(t, b.Published(telemetryTopic)); !slices.Equal(got, want) {
			return fmt.Errorf("broker got seqs %v, want %v", got, want)
		}
		return nil
	})
}

func TestPublishesTelemetryAndPresence(t *testing.T) {
	b := brokertest.Start(t, "")
	r := start(t, b.URL, 1)
	for _, s := range []uint64{1, 3, 5} {
		_ = r.q.Put(context.Background(), batch(s))
	}
	waitSeqs(t, b, []uint64{1, 3, 5})
	for _, m := range b.Published(telemetryTopic) {
		if m.QoS != 1 || m.ClientID != device {
			t.Errorf("telemetry published with QoS %d by %q, want QoS 1 by %q", m.QoS, m.ClientID, device)
		}
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		s := status(t, b)
		if s.GetState() != outpostv1.Status_STATE_ONLINE || s.GetAgentVersion() != "1.2.3" || s.GetTsUnixMs() == 0 {
			return fmt.Errorf("retained status = %v, want online with version and time", s)
		}
		return nil
	})
	testutil.Eventually(t, 5*time.Second, func() error {
		if st := r.u.Stats(); st.BatchesAcked != 3 || st.PointsAcked != 6 || !st.Connected || st.LastPublish.IsZero() {
			return fmt.Errorf("stats = %+v", st)
		}
		return nil
	})
	if n := r.q.Stats().Len; n != 0 {
		t.Errorf("queue holds %d batches after delivery, want 0", n)
	}

	// A clean stop leaves a retained offline status behind.
	r.stop(t)
	if s := status(t, b); s.GetState() != outpostv1.Status_STATE_OFFLINE {
		t.Errorf("retained status after stop = %v, want offline", s)
	}
	if r.u.Stats().Connected {
		t.Error("Connected after Run returned")
	}
}

func TestLastWillOnLostConnection(t *testing.T) {
	b := brokertest.Start(t, "")
	r := start(t, b.URL, 1)
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

// TestBrokerRestartDeliversQueuedBatchesInOrder stops the broker while
// batches keep coming, then starts a new one on the same address: every
// batch must arrive, in order, none missing.
func TestBrokerRestartDeliversQueuedBatchesInOrder(t *testing.T) {
	b1 := brokertest.Start(t, "")
	r := start(t, b1.URL, 1)
	var want []uint64
	next := uint64(1)
	put := func(n int) {
		for range n {
			_ = r.q.Put(context.Background(), batch(next))
			want = append(want, next)
			next += 2
		}
	}
	put(5)
	waitSeqs(t, b1, want)

	put(3) // some of these may be in flight when the broker goes
	b1.Close()
	testutil.Eventually(t, 5*time.Second, func() error {
		if r.u.Stats().Connected {
			return fmt.Errorf("still connected")
		}
		return nil
	})
	put(10) // queued while offline

	b2 := brokertest.Start(t, b1.Addr)
	testutil.Eventually(t, 10*time.Second, func() error {
		if r.q.Stats().Len != 0 {
			return fmt.Errorf("queue still holds %d batches", r.q.Stats().Len)
		}
		return nil
	})

	// Together the brokers saw every batch. A batch in flight during the
	// restart may reach both (the hub drops the duplicate by seq), but
	// each broker must see them in order.
	got1, got2 := seqs(t, b1.Published(telemetryTopic)), seqs(t, b2.Published(telemetryTopic))
	for i, got := range [][]uint64{got1, got2} {
		if !slices.IsSorted(got) {
			t.Errorf("broker %d received seqs out of order: %v", i+1, got)
		}
	}
	all := slices.Compact(slices.Sorted(slices.Values(append(got1, got2...))))
	if !slices.Equal(all, want) {
		t.Errorf("brokers received %v + %v, want every one of %v", got1, got2, want)
	}
	if len(got2) == 0 || got2[len(got2)-1] != want[len(want)-1] {
		t.Errorf("second broker received %v, want it to end with %d", got2, want[len(want)-1])
	}
	if s := status(t, b2); s.GetState() != outpostv1.Status_STATE_ONLINE {
		t.Errorf("second broker's retained status = %v, want online", s)
	}
	if st := r.u.Stats(); st.Connects != 2 || st.BatchesRejected != 0 {
		t.Errorf("stats = %+v, want 2 connects and no rejections", st)
	}
}

func TestRejectedBatchIsNotRetried(t *testing.T) {
	b := brokertest.Start(t, "")
	var offered atomic.Int32 // how often batch 3 reached the broker
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
	r := start(t, b.URL, 1)
	for _, s := range []uint64{1, 3, 5} {
		_ = r.q.Put(context.Background(), batch(s))
	}
	// Batches go one at a time, in order: once 5 is through, a retry of 3
	// would have happened already.
	waitSeqs(t, b, []uint64{1, 5})
	testutil.Eventually(t, 5*time.Second, func() error {
		if st := r.u.Stats(); st.BatchesRejected != 1 || st.BatchesAcked != 2 || st.BatchesSent != 3 || st.Retries != 0 {
			return fmt.Errorf("stats = %+v, want 1 rejected, 2 acked, 3 sent, no retries", st)
		}
		return nil
	})
	if n := offered.Load(); n != 1 {
		t.Errorf("the rejected batch reached the broker %d times, want 1", n)
	}
	if n := r.q.Stats().Len; n != 0 {
		t.Errorf("queue holds %d batches, want 0", n)
	}
}

func TestQoS0(t *testing.T) {
	b := brokertest.Start(t, "")
	r := start(t, b.URL, 0)
	_ = r.q.Put(context.Background(), batch(1))
	waitSeqs(t, b, []uint64{1})
	if m := b.Published(telemetryTopic)[0]; m.QoS != 0 {
		t.Errorf("QoS = %d, want 0", m.QoS)
	}
}

func TestNewValidates(t *testing.T) {
	_, err := New(Config{DeviceID: "a/b", URL: "http://x", QoS: 3, BackoffMin: time.Second, BackoffMax: time.Millisecond}, nil)
	if err == nil {
		t.Fatal("New = nil error")
	}
	for _, want := range []string{"device id", "scheme must be mqtt or tls", "QoS must be", "backoff max", "no queue"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
