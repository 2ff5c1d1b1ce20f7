package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/outpost-edge/outpost/internal/agent/config"
	"github.com/outpost-edge/outpost/internal/agent/localapi"
	"github.com/outpost-edge/outpost/internal/agent/shadow"
)

// The local API stores published points through the collector's sink.
var _ localapi.Sink = spoolSink{}

// appAPI is the local API for edge apps (api.listen) while Run runs.
type appAPI struct {
	ln  net.Listener
	api *localapi.API
}

// openAPI listens on api.listen; it returns nil when the API is off, or
// when api.listen is the default address and another process (often
// another agent on the same host) holds it: the agent then runs without
// the API rather than not at all. Any other failure is an error.
func (a *Agent) openAPI() (*appAPI, error) {
	addr := a.cfg.API.Listen
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if addr == config.DefaultAPIListen && errors.Is(err, syscall.EADDRINUSE) {
			a.log.Warn("the local API's default address is in use; running without the local API (set api.listen)", "addr", addr, "err", err)
			return nil, nil
		}
		return nil, fmt.Errorf("starting the local API: %w", err)
	}
	api, err := localapi.New(localapi.Options{
		DataDir:  a.opts.DataDir,
		Sink:     spoolSink{a},
		Desired:  a.desired,
		HubURL:   a.cfg.HubURL,
		DeviceID: a.cfg.DeviceID,
		Password: a.cfg.MQTT.Password,
		Logger:   a.log,
	})
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	a.httpMu.Lock()
	a.apiAddr = ln.Addr().String()
	a.httpMu.Unlock()
	return &appAPI{ln: ln, api: api}, nil
}

// desired returns the shadow's desired state as last applied and saved.
func (a *Agent) desired() (map[string]any, error) {
	st, err := shadow.Load(filepath.Join(a.opts.DataDir, shadow.FileName))
	return st.Desired, err
}

// serve serves the API in g until ctx ends.
func (p *appAPI) serve(ctx context.Context, g *errgroup.Group, log *slog.Logger) {
	srv := &http.Server{
		Handler:           p.api.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	g.Go(func() error {
		if err := srv.Serve(p.ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serving the local API: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return nil
	})
}

// close closes the listener, if serve did not take it, and state.db.
func (p *appAPI) close(log *slog.Logger) {
	_ = p.ln.Close()
	if err := p.api.Close(); err != nil {
		log.Error("closing the local API's store failed", "err", err)
	}
}

// APIAddr returns the address the local API listens on once Run has
// started it, or "" when it is off.
func (a *Agent) APIAddr() string {
	a.httpMu.Lock()
	defer a.httpMu.Unlock()
	return a.apiAddr
}
