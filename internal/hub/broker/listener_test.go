package broker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/outpost-edge/outpost/internal/testutil"
)

// The hub runs out of file descriptors when a fleet outgrows `ulimit -n`:
// accepting fails with EMFILE. Once descriptors are free again, devices
// must be able to connect (the MQTT library's own listener stopped
// accepting for good).
func TestAcceptResumesAfterRunningOutOfFiles(t *testing.T) {
	b := startBroker(t, &fakes{})
	addr := b.Addr()

	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count open files: %v", err)
	}
	// Room for a few client sockets but not for the broker's side of them.
	low := lim
	low.Cur = uint64(len(fds) + 4)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer restore()
	var conns []net.Conn
	for range 4 {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		conns = append(conns, c)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if promtest.ToFloat64(b.acceptErrors) == 0 {
			return fmt.Errorf("accept never failed with %d files allowed; the test did not exhaust them", low.Cur)
		}
		return nil
	})
	restore()
	// With descriptors free again the broker accepts the waiting sockets:
	// each is answered (a first packet other than CONNECT closes it), not
	// left in the listen queue. The listener waits up to a second between
	// attempts.
	for i, c := range conns {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte{0xC0, 0x00}); err != nil { // PINGREQ
			t.Fatalf("socket %d: %v", i, err)
		}
		if _, err := io.ReadAll(c); err != nil {
			t.Fatalf("socket %d was not accepted and closed by the broker: %v", i, err)
		}
		_ = c.Close()
	}
	connect(t, addr, "after-emfile")
}

// Close ends Serve even while it waits out an accept error.
func TestListenerCloseDuringBackoff(t *testing.T) {
	l := newTCPListener("t", "127.0.0.1:0", slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewCounter(prometheus.CounterOpts{Name: "x"}))
	l.listen = failingListener{}
	done := make(chan struct{})
	go func() {
		l.Serve(func(string, net.Conn) error { return nil })
		close(done)
	}()
	// Two failures: Serve is backing off between attempts.
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := promtest.ToFloat64(l.errors); n < 2 {
			return fmt.Errorf("accept errors counted: %v", n)
		}
		return nil
	})
	l.Close(func(string) {})
	select {
	case <-done:
	case <-time.After(2 * acceptBackoffMax):
		t.Fatal("Serve did not return after Close")
	}
}

type failingListener struct{}

func (failingListener) Accept() (net.Conn, error) { return nil, syscall.EMFILE }
func (failingListener) Close() error              { return nil }
func (failingListener) Addr() net.Addr            { return &net.TCPAddr{} }

// runSilentBroker runs a broker whose connections have timeout to send
// CONNECT; stop ends it and returns Run's result, or fails the test when
// it does not end within 5 s.
func runSilentBroker(t *testing.T, timeout time.Duration) (b *Broker, stop func()) {
	t.Helper()
	old := connectTimeout
	connectTimeout = timeout // before the broker's goroutines start
	b, err := New(Options{Addr: "127.0.0.1:0", Auth: &fakes{}, Presence: &fakes{}, Ingest: &fakes{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(5 * time.Second):
			t.Error("the broker did not shut down within 5s")
		}
		connectTimeout = old
	}
	t.Cleanup(stop)
	return b, stop
}

// waitOpen waits until the broker has accepted n connections that are
// not clients yet.
func waitOpen(t *testing.T, b *Broker, n int) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, func() error {
		b.tcp.mu.Lock()
		defer b.tcp.mu.Unlock()
		if len(b.tcp.open) != n {
			return fmt.Errorf("%d connections open, want %d", len(b.tcp.open), n)
		}
		return nil
	})
}

// A connection that never sends CONNECT is closed after connectTimeout.
func TestSilentConnectionClosed(t *testing.T) {
	b, _ := runSilentBroker(t, 200*time.Millisecond)
	c, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("a silent connection was not closed: %v", err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("closed after %v, before the connect timeout of 200ms", d)
	}
	waitOpen(t, b, 0)
}

// A connection that never sent CONNECT does not hold the broker's
// shutdown (the library waits for every connection it was handed).
func TestShutdownWithSilentConnection(t *testing.T) {
	b, stop := runSilentBroker(t, time.Hour)
	c, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitOpen(t, b, 1)
	stop()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Errorf("the silent connection was not closed at shutdown: %v", err)
	}
}
