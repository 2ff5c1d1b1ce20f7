package broker

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/prometheus/client_golang/prometheus"
)

// tcpListener is the broker's MQTT listener. It replaces the MQTT
// library's own TCP listener, whose accept loop ends for good at the first
// accept error: once the process ran out of file descriptors (a fleet
// larger than `ulimit -n`), the hub never accepted another device, even
// after descriptors were freed. This one waits and accepts again, as
// net/http's server does, logging the first error of a run.
//
// It also bounds what the library leaves open: a connection must send its
// CONNECT packet within connectTimeout (after it, the library's keepalive
// deadlines apply), and Close closes the connections that never did, which
// the library cannot (they are not clients yet) and whose reads would
// otherwise hold the broker's shutdown forever.
type tcpListener struct {
	id, address string
	logger      *slog.Logger
	errors      prometheus.Counter

	mu     sync.Mutex
	listen net.Listener
	closed bool
	done   chan struct{}
	// open holds the accepted connections still in the library's hands.
	open map[net.Conn]struct{}
}

// connectTimeout is how long a new connection has to send CONNECT (a
// variable for tests).
var connectTimeout = 10 * time.Second

// Accept errors are retried after acceptBackoffMin, doubling to
// acceptBackoffMax while they last.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

func newTCPListener(id, address string, logger *slog.Logger, errs prometheus.Counter) *tcpListener {
	return &tcpListener{id: id, address: address, logger: logger, errors: errs, done: make(chan struct{}), open: map[net.Conn]struct{}{}}
}

func (l *tcpListener) ID() string       { return l.id }
func (l *tcpListener) Protocol() string { return "tcp" }

// Address is the bound address once Init has run.
func (l *tcpListener) Address() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.listen != nil {
		return l.listen.Addr().String()
	}
	return l.address
}

// Init binds the address. The library's logger is not used: it is
// discarded (see New).
func (l *tcpListener) Init(*slog.Logger) error {
	ln, err := net.Listen("tcp", l.address)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.listen = ln
	l.mu.Unlock()
	return nil
}

// Serve accepts connections until Close, handing each to establish.
func (l *tcpListener) Serve(establish listeners.EstablishFn) {
	l.mu.Lock()
	ln := l.listen
	l.mu.Unlock()
	var wait time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if l.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			l.errors.Inc()
			if wait == 0 {
				wait = acceptBackoffMin
				l.logger.Error("accepting MQTT connections failed; retrying", "err", err)
			} else {
				wait = min(2*wait, acceptBackoffMax)
			}
			select {
			case <-time.After(wait):
			case <-l.done:
				return
			}
			continue
		}
		if wait != 0 {
			l.logger.Info("accepting MQTT connections again")
			wait = 0
		}
		if !l.track(conn) {
			_ = conn.Close()
			return
		}
		_ = conn.SetDeadline(time.Now().Add(connectTimeout))
		go func() {
			defer l.untrack(conn)
			if err := establish(l.id, conn); err != nil {
				l.logger.Debug("MQTT connection ended", "err", err)
			}
		}()
	}
}

// track records conn as open; false once the listener is closed.
func (l *tcpListener) track(conn net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.open[conn] = struct{}{}
	return true
}

func (l *tcpListener) untrack(conn net.Conn) {
	l.mu.Lock()
	delete(l.open, conn)
	l.mu.Unlock()
}

func (l *tcpListener) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// Close stops accepting and closes the clients of this listener and the
// connections that are not clients yet.
func (l *tcpListener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	close(l.done)
	ln := l.listen
	l.mu.Unlock()
	closeClients(l.id)
	if ln != nil {
		_ = ln.Close()
	}
	// Whatever the library did not close: connections that never sent
	// CONNECT. Closing a client's connection again is harmless.
	l.mu.Lock()
	for conn := range l.open {
		_ = conn.Close()
	}
	l.mu.Unlock()
}
