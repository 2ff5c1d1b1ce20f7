package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/outpost-edge/outpost/internal/hub/ingest"
	"github.com/outpost-edge/outpost/internal/hub/store"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/protocol"
)

type fakes struct {
	mu        sync.Mutex
	presence  []bool // online states recorded for "dev", in order
	ingestErr error
	handled   int
}

func (f *fakes) Authenticate(_ context.Context, id, pw string) bool { return pw == "pw-"+id }

func (f *fakes) SetPresence(_ context.Context, id string, online bool, _ string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id == "dev" {
		f.presence = append(f.presence, online)
	}
}

func (f *fakes) RecordStatus(ctx context.Context, id string, online bool, version string, _ *store.SpoolStats) {
	f.SetPresence(ctx, id, online, version)
}

func (f *fakes) Handle(context.Context, string, []byte, string) (ingest.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handled++
	return ingest.Result{Points: 1}, f.ingestErr
}

func (f *fakes) lastPresence() (bool, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.presence) == 0 {
		return false, 0
	}
	return f.presence[len(f.presence)-1], len(f.presence)
}

func startBroker(t *testing.T, f *fakes) *Broker {
	t.Helper()
	b, err := New(Options{Addr: "127.0.0.1:0", Auth: f, Presence: f, Ingest: f, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return b
}

func connect(t *testing.T, addr, id string) *paho.Client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn, ClientID: id})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30,
		UsernameFlag: true, Username: id, PasswordFlag: true, Password: []byte("pw-" + id)}); err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c
}

// A batch the store could not take gets no PUBACK; the connection is closed
// so that the client redelivers it after reconnecting.
func TestStoreFailureClosesConnectionWithoutAck(t *testing.T) {
	f := &fakes{ingestErr: errors.New("database is locked")}
	b := startBroker(t, f)
	c := connect(t, b.Addr(), "dev")
	// paho does not fail a pending publish when the connection drops (it
	// waits for its context), so bound the publish on its own.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := c.Publish(ctx, &paho.Publish{Topic: protocol.TelemetryTopic("dev"), QoS: 1, Payload: []byte("x")})
	if err == nil && resp != nil && resp.ReasonCode < 0x80 {
		t.Fatalf("publish was acknowledged (reason %#x) although nothing was stored", resp.ReasonCode)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("connection stayed open after a failed store")
	}
	f.mu.Lock()
	handled := f.handled
	f.mu.Unlock()
	if handled != 1 {
		t.Errorf("ingest saw %d batches, want 1", handled)
	}
}

// When a device reconnects and its new session takes over the old one, the
// old connection's end must not mark the device offline.
func TestSessionTakeoverKeepsDeviceOnline(t *testing.T) {
	f := &fakes{}
	b := startBroker(t, f)
	first := connect(t, b.Addr(), "dev")
	connect(t, b.Addr(), "dev")
	select {
	case <-first.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("first session was not taken over")
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if online, n := f.lastPresence(); n < 2 || !online {
			return errors.New("device not recorded online after takeover")
		}
		return nil
	})
	if online, n := f.lastPresence(); !online {
		t.Fatalf("presence history of %d changes ends offline while the new session is connected", n)
	}
}

func TestDisconnectDevice(t *testing.T) {
	f := &fakes{}
	b := startBroker(t, f)
	c := connect(t, b.Addr(), "dev")
	b.DisconnectDevice("dev")
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("DisconnectDevice left the connection open")
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if online, _ := f.lastPresence(); online {
			return errors.New("still online")
		}
		return nil
	})
	b.DisconnectDevice("nobody") // unknown ids are ignored
}
