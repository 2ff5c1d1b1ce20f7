package localapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"time"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
)

// StateFileName is the name of the apps' store in the data directory.
const StateFileName = "state.db"

// Sink stores points durably; the agent's spool, the same that holds the
// collected readings. Append must be safe for concurrent use and return
// only once the points are stored (or failed).
type Sink interface {
	Append(ctx context.Context, points []*outpostv1.Point) error
}

// Options are what the API needs from the agent.
type Options struct {
	// DataDir holds state.db. Required.
	DataDir string
	// Sink receives published points. Required.
	Sink Sink
	// Desired returns the device shadow's desired state as last applied
	// (nil when there is none). Required. It is called on every config
	// request and must be safe for concurrent use.
	Desired func() (map[string]any, error)
	// HubURL is the base URL of the hub's HTTP API; empty: service
	// lookups answer from the cache only.
	HubURL string
	// DeviceID and Password are the device's credentials for the hub
	// (HTTP Basic, the MQTT password).
	DeviceID, Password string
	// Client makes the requests to the hub; nil: a client with a 10s
	// timeout.
	Client *http.Client
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Logger receives the API's logs; nil discards them.
	Logger *slog.Logger
}

// API is the local API. Its handler is safe for concurrent use; Close
// closes state.db once the server that used the handler has stopped.
type API struct {
	opts  Options
	log   *slog.Logger
	store *Store
}

// New checks opts and builds the API; state.db is opened on first use.
func New(opts Options) (*API, error) {
	var errs []error
	if opts.DataDir == "" {
		errs = append(errs, errors.New("no data directory"))
	}
	if opts.Sink == nil {
		errs = append(errs, errors.New("no sink"))
	}
	if opts.Desired == nil {
		errs = append(errs, errors.New("no desired state source"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("creating the local API: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &API{
		opts:  opts,
		log:   opts.Logger.With("component", "localapi"),
		store: NewStore(filepath.Join(opts.DataDir, StateFileName)),
	}, nil
}

// Close closes state.db if it was opened and the idle connections to
// the hub. It is safe to call twice.
func (a *API) Close() error {
	a.opts.Client.CloseIdleConnections()
	return a.store.Close()
}

// endpoint is one line of the index at /v1.
type endpoint struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	About  string `json:"about"`
}

var endpoints = []endpoint{
	{"POST", "/v1/publish", "publish telemetry points through the agent's spool"},
	{"GET", "/v1/config", "the app section of the device shadow's desired state"},
	{"GET", "/v1/config/{key}", "one key of the app section (nested keys: a/b)"},
	{"GET", "/v1/services/{name}", "the hub's registered instances of a service (?tag=t, cached)"},
	{"GET", "/v1/state?prefix=P", "list the stored keys"},
	{"GET", "/v1/state/{key}", "read a stored value"},
	{"PUT", "/v1/state/{key}", "store a value (at most 64 KiB)"},
	{"DELETE", "/v1/state/{key}", "delete a stored value"},
}

// Handler returns the API's routes under /v1.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	index := func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"endpoints": endpoints})
	}
	mux.HandleFunc("GET /v1", index)
	mux.HandleFunc("GET /v1/{$}", index)
	mux.HandleFunc("POST /v1/publish", a.publish)
	mux.HandleFunc("GET /v1/config", a.config)
	mux.HandleFunc("GET /v1/config/{key...}", a.config)
	mux.HandleFunc("GET /v1/services/{name}", a.services)
	mux.HandleFunc("GET /v1/state", a.stateList)
	mux.HandleFunc("GET /v1/state/{key...}", a.stateGet)
	mux.HandleFunc("PUT /v1/state/{key...}", a.statePut)
	mux.HandleFunc("DELETE /v1/state/{key...}", a.stateDelete)
	// The patterns without a method catch the other methods, so that a
	// wrong method gets a JSON 405 too.
	for _, p := range []string{"/v1", "/v1/{$}", "/v1/publish", "/v1/config", "/v1/config/{key...}", "/v1/services/{name}", "/v1/state", "/v1/state/{key...}"} {
		mux.HandleFunc(p, methodNotAllowed)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path+"; GET /v1 lists them")
	})
	return mux
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusMethodNotAllowed, r.Method+" is not allowed on "+r.URL.Path+"; GET /v1 lists the endpoints")
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// errorBody is the shape of every error answer.
type errorBody struct {
	Error string `json:"error"`
	// Problems lists every problem of a bad publish.
	Problems []string `json:"problems,omitempty"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{Error: msg})
}

// readBody reads a request body of at most limit bytes. On failure it
// answers 413 ("what larger than limit bytes") or 400 and reports false.
func readBody(w http.ResponseWriter, r *http.Request, limit int64, what string) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("%s larger than %d bytes", what, limit))
			return nil, false
		}
		writeError(w, http.StatusBadRequest, "reading the body: "+err.Error())
		return nil, false
	}
	return body, true
}
