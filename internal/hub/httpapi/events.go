package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
)

// deviceEventsInterval is how often the device event stream compares the
// device list with the one it sent last.
const deviceEventsInterval = time.Second

// deviceEvents streams the device list as Server-Sent Events: a "devices"
// event with the whole list (the body of GET /devices, with the same
// ?label= selector) at once and whenever it changes, and a keep-alive
// comment while idle, until the client goes away or the server shuts
// down. It compares snapshots every deviceEventsInterval rather than
// hooking presence changes: one list query a second per open dashboard is
// cheap, and it cannot miss a change made by any path (API, MQTT presence,
// status reports).
func (a *api) deviceEvents(c *gin.Context) {
	sel, ok := labelSelector(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	snapshot := func() ([]byte, error) {
		ds, err := a.Devices.List(ctx, sel)
		if err != nil {
			return nil, err
		}
		out := make([]deviceJSON, len(ds))
		for i, d := range ds {
			out[i] = toDeviceJSON(d)
		}
		return json.Marshal(gin.H{"devices": out})
	}
	last, err := snapshot()
	if err != nil {
		a.failErr(c, err)
		return
	}
	stream := openSSE(c)
	defer stream.close()
	if !stream.send("devices", last) {
		return
	}
	check := time.NewTicker(deviceEventsInterval)
	defer check.Stop()
	for {
		select {
		case <-check.C:
			b, err := snapshot()
			if err != nil {
				if ctx.Err() == nil {
					a.logger.Warn("listing devices for the event stream", "err", err)
				}
				continue
			}
			if bytes.Equal(b, last) {
				continue
			}
			last = b
			if !stream.send("devices", b) {
				return
			}
		case <-stream.keepAlive.C:
			if !stream.ping() {
				return
			}
		case <-stream.closing:
			return
		case <-ctx.Done():
			return
		}
	}
}

// sse is a server-sent event stream to one client: the response headers
// are written, and keepAlive ticks when a comment should keep idle
// proxies from closing it.
type sse struct {
	w         gin.ResponseWriter
	keepAlive *time.Ticker
	// closing is closed when the server shuts down (nil: never).
	closing <-chan struct{}
}

// openSSE starts the event stream of c's response.
func openSSE(c *gin.Context) *sse {
	w := c.Writer
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	w.Flush()
	return &sse{w: w, keepAlive: time.NewTicker(sseKeepAlive), closing: serverClosing(c.Request)}
}

// send writes one event; false when the client is gone.
func (s *sse) send(event string, data []byte) bool {
	if _, err := fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", event, data); err != nil {
		return false
	}
	s.w.Flush()
	return true
}

// ping writes a keep-alive comment; false when the client is gone.
func (s *sse) ping() bool {
	if _, err := fmt.Fprint(s.w, ": keep-alive\n\n"); err != nil {
		return false
	}
	s.w.Flush()
	return true
}

func (s *sse) close() { s.keepAlive.Stop() }

// requireAuthOrQueryToken is requireAuth that also accepts the token as
// ?access_token=, because a browser's EventSource cannot send headers. It
// guards the event streams only: a token in a URL can end up in proxy logs
// and browser history, so the other endpoints keep insisting on the header.
// The hub's own request log records the path without the query.
func (a *api) requireAuthOrQueryToken(c *gin.Context) {
	if tok := c.Query("access_token"); tok != "" && c.GetHeader("Authorization") == "" {
		c.Request.Header.Set("Authorization", "Bearer "+tok)
	}
	a.requireAuth(c)
}

// shutdowns maps each *http.Server that has served an event stream to a
// channel closed when the server shuts down. http.Server.Shutdown waits
// for active requests and does not cancel their contexts, so without this
// an open dashboard would hold a hub's shutdown until its timeout.
var shutdowns sync.Map // *http.Server → chan struct{}

// serverClosing returns a channel closed when the server serving r shuts
// down, or nil (never ready) when r did not come through an http.Server.
// The shutdown hook is registered once per server.
func serverClosing(r *http.Request) <-chan struct{} {
	srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server)
	if !ok || srv == nil {
		return nil
	}
	ch := make(chan struct{})
	if v, loaded := shutdowns.LoadOrStore(srv, ch); loaded {
		return v.(chan struct{})
	}
	srv.RegisterOnShutdown(func() {
		shutdowns.Delete(srv)
		close(ch)
	})
	return ch
}
