package broker

import (
	"io"
	"log/slog"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
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
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(b.acceptErrors) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	failures := testutil.ToFloat64(b.acceptErrors)
	for _, c := range conns {
		_ = c.Close()
	}
	restore()
	if failures == 0 {
		t.Fatalf("accept never failed with %d files allowed; the test did not exhaust them", low.Cur)
	}
	// The listener waits up to a second between attempts; connect allows 5.
	connect(t, addr, "after-emfile")
	// The sockets dialled above were accepted before it and end at once
	// (EOF before CONNECT); let them, so that the broker's shutdown does
	// not meet a connection still being set up.
	time.Sleep(200 * time.Millisecond)
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
	time.Sleep(3 * acceptBackoffMin)
	l.Close(func(string) {})
	select {
	case <-done:
	case <-time.After(2 * acceptBackoffMax):
		t.Fatal("Serve did not return after Close")
	}
	if n := testutil.ToFloat64(l.errors); n < 1 {
		t.Errorf("accept errors counted: %v", n)
	}
}

type failingListener struct{}

func (failingListener) Accept() (net.Conn, error) { return nil, syscall.EMFILE }
func (failingListener) Close() error              { return nil }
func (failingListener) Addr() net.Addr            { return &net.TCPAddr{} }
