package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/outpost-edge/outpost/internal/hub/auth"
	"github.com/outpost-edge/outpost/internal/hub/device"
	"github.com/outpost-edge/outpost/internal/hub/store"
	"github.com/outpost-edge/outpost/protocol"
)

// MaxBodyBytes caps every request body.
const MaxBodyBytes = 1 << 20

// Devices is the device service as the API uses it.
type Devices interface {
	Add(ctx context.Context, id string, labels map[string]string) (device.Enrollment, error)
	NewJoinToken(ctx context.Context, id string) (device.Enrollment, error)
	Get(ctx context.Context, id string) (store.Device, error)
	List(ctx context.Context, selector map[string]string) ([]store.Device, error)
	Delete(ctx context.Context, id string) error
	Join(ctx context.Context, token string) (device.Credentials, error)
}

// Auth logs users in and verifies API tokens.
type Auth interface {
	Login(ctx context.Context, user, password string) (string, time.Time, error)
	Verify(token string) (string, error)
}

// Telemetry reads stored points.
type Telemetry interface {
	Points(ctx context.Context, q store.PointQuery) ([]store.Point, error)
}

// Options configure the API.
type Options struct {
	Devices   Devices
	Auth      Auth
	Telemetry Telemetry
	// Shadows serves the shadow endpoints; nil: they are not mounted.
	Shadows Shadows
	// OTA serves the TUF repository (/tuf/…) and the key and artifact
	// endpoints; nil: they are not mounted.
	OTA OTA
	// Rollouts serves /rollouts; nil: not mounted.
	Rollouts Rollouts
	// Deploy serves /deployments and service logs; nil: not mounted.
	Deploy Deployments
	// Services answers devices' service lookups at
	// /api/v1/device/services/{name}; nil: not mounted.
	Services ServiceResolver
	// Registry serves /services, the service registry; nil: not mounted.
	Registry ServiceRegistry
	// Ready reports whether the hub can serve (store and broker up).
	Ready func(ctx context.Context) error
	// Metrics serves /metrics.
	Metrics http.Handler
	// PublicURL is the hub's URL as devices reach it; empty: derived from
	// each request's Host.
	PublicURL string
	// MQTTURL is the broker's URL as devices reach it; empty: the request's
	// host with MQTTPort.
	MQTTURL  string
	MQTTPort string
	// Extra mounts more routes (e.g. the web UI) on the engine.
	Extra  func(*gin.Engine)
	Logger *slog.Logger
}

// New returns the API's http.Handler.
func New(opts Options) http.Handler {
	gin.SetMode(gin.ReleaseMode)
	a := &api{Options: opts, logger: opts.Logger.With("component", "httpapi")}
	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.Use(a.recover, a.logRequests, limitBody)
	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/readyz", a.readyz)
	if opts.Metrics != nil {
		r.GET("/metrics", gin.WrapH(opts.Metrics))
	}
	v1 := r.Group("/api/v1")
	v1.POST("/auth/login", a.login)
	v1.POST("/join", a.join)
	a.registerDeviceServiceRoutes(v1)
	v1.GET("/events/devices", a.requireAuthOrQueryToken, a.deviceEvents)
	authed := v1.Group("", a.requireAuth)
	authed.GET("/devices", a.listDevices)
	authed.POST("/devices", a.addDevice)
	authed.GET("/devices/:id", a.getDevice)
	authed.DELETE("/devices/:id", a.deleteDevice)
	authed.PATCH("/devices/:id", a.patchDevice)
	authed.POST("/devices/:id/join-token", a.newJoinToken)
	authed.GET("/devices/:id/telemetry", a.queryTelemetry)
	if opts.Shadows != nil {
		a.registerShadowRoutes(authed)
	}
	if opts.OTA != nil {
		a.registerOTARoutes(r, authed)
	}
	if opts.Rollouts != nil {
		a.registerRolloutRoutes(authed)
	}
	a.registerDeployRoutes(authed)
	a.registerServiceRoutes(authed)
	if opts.Extra != nil {
		opts.Extra(r)
	}
	r.NoRoute(func(c *gin.Context) {
		fail(c, http.StatusNotFound, "not_found", "no such endpoint: "+c.Request.Method+" "+c.Request.URL.Path)
	})
	r.NoMethod(func(c *gin.Context) {
		fail(c, http.StatusMethodNotAllowed, "method_not_allowed", c.Request.Method+" is not allowed on "+c.Request.URL.Path)
	})
	return r
}

type api struct {
	Options
	logger *slog.Logger
}

// errorBody is the JSON shape of every error response.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func fail(c *gin.Context, status int, code, msg string) {
	var b errorBody
	b.Error.Code, b.Error.Message = code, msg
	c.AbortWithStatusJSON(status, b)
}

// failErr maps a service error to a status and code.
func (a *api) failErr(c *gin.Context, err error) {
	switch {
	case errors.Is(err, device.ErrInvalid):
		fail(c, http.StatusBadRequest, "bad_request", err.Error())
	case errors.Is(err, store.ErrNotFound):
		fail(c, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, store.ErrExists):
		fail(c, http.StatusConflict, "conflict", err.Error())
	case errors.Is(err, context.Canceled):
		fail(c, 499, "canceled", "request canceled")
	default:
		a.logger.Error("request failed", "method", c.Request.Method, "path", c.FullPath(), "err", err)
		fail(c, http.StatusInternalServerError, "internal", "internal error; the hub's log has the cause")
	}
}

func (a *api) recover(c *gin.Context) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			a.logger.Error("panic in handler", "method", c.Request.Method, "path", c.Request.URL.Path, "panic", fmt.Sprint(v))
			fail(c, http.StatusInternalServerError, "internal", "internal error; the hub's log has the cause")
		}
	}()
	c.Next()
}

// logRequests logs every request: at Warn when it failed with a 5xx, else
// at Debug.
func (a *api) logRequests(c *gin.Context) {
	start := time.Now()
	c.Next()
	level := slog.LevelDebug
	if c.Writer.Status() >= 500 {
		level = slog.LevelWarn
	}
	// The level is checked before the attributes are built, which allocates:
	// at the default level the successful requests are not logged at all.
	ctx := context.Background()
	if !a.logger.Enabled(ctx, level) {
		return
	}
	a.logger.Log(ctx, level, "request", "method", c.Request.Method, "path", c.Request.URL.Path, "status", c.Writer.Status(), "duration", time.Since(start))
}

func limitBody(c *gin.Context) {
	// Artifact uploads are streamed and limited by the OTA service.
	if c.Request.Body != nil && !(c.Request.Method == http.MethodPost && c.Request.URL.Path == pathArtifacts) {
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, MaxBodyBytes)
	}
	c.Next()
}

// bind decodes a strict JSON body into v, answering 400/413 itself on failure.
func bind(c *gin.Context, v any) bool {
	dec := json.NewDecoder(c.Request.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		// Anything but the end of the body after the object is an error,
		// including a lone '}' or ']' (which Decoder.More does not see).
		if extra := dec.Decode(&struct{}{}); extra != io.EOF {
			err = errors.New("data after the JSON object")
			var tooBig *http.MaxBytesError
			if errors.As(extra, &tooBig) {
				err = extra
			}
		}
	}
	if err == nil {
		return true
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		fail(c, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body over %d bytes", MaxBodyBytes))
	case errors.Is(err, io.EOF):
		fail(c, http.StatusBadRequest, "bad_request", "request body is empty; expected a JSON object")
	default:
		fail(c, http.StatusBadRequest, "bad_request", "invalid JSON body: "+err.Error())
	}
	return false
}

func (a *api) readyz(c *gin.Context) {
	if a.Ready != nil {
		if err := a.Ready(c.Request.Context()); err != nil {
			a.logger.Warn("not ready", "err", err)
			fail(c, http.StatusServiceUnavailable, "unavailable", "the hub is not ready; its log has the cause")
			return
		}
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
}

const userKey = "outpost.user"

func (a *api) requireAuth(c *gin.Context) {
	h := c.GetHeader("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		fail(c, http.StatusUnauthorized, "unauthorized", "missing bearer token; log in with POST /api/v1/auth/login")
		return
	}
	user, err := a.Auth.Verify(strings.TrimSpace(tok))
	if err != nil {
		fail(c, http.StatusUnauthorized, "unauthorized", "invalid or expired token; log in again")
		return
	}
	c.Set(userKey, user)
	c.Next()
}

func (a *api) login(c *gin.Context) {
	var req struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if !bind(c, &req) {
		return
	}
	if req.Username == "" || req.Password == "" {
		fail(c, http.StatusBadRequest, "bad_request", "username and password are required")
		return
	}
	tok, exp, err := a.Auth.Login(c.Request.Context(), req.Username, req.Password)
	if errors.Is(err, auth.ErrBadCredentials) {
		fail(c, http.StatusUnauthorized, "unauthorized", err.Error())
		return
	}
	if err != nil {
		a.failErr(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"token": tok, "expires_at": exp.UTC()})
}

// deviceJSON is the API's Device.
type deviceJSON struct {
	ID           string            `json:"id"`
	Labels       map[string]string `json:"labels"`
	CreatedAt    time.Time         `json:"created_at"`
	Joined       bool              `json:"joined"`
	Online       bool              `json:"online"`
	LastSeen     *time.Time        `json:"last_seen,omitempty"`
	AgentVersion string            `json:"agent_version,omitempty"`
	Spool        *spoolJSON        `json:"spool,omitempty"`
}

// spoolJSON is the agent's last report of its store-and-forward backlog.
type spoolJSON struct {
	Points     uint64     `json:"points"`
	Bytes      uint64     `json:"bytes"`
	Dropped    uint64     `json:"dropped"`
	Oldest     *time.Time `json:"oldest,omitempty"`
	ReportedAt time.Time  `json:"reported_at"`
}

func toDeviceJSON(d store.Device) deviceJSON {
	out := deviceJSON{ID: d.ID, Labels: d.Labels, CreatedAt: d.CreatedAt, Joined: !d.JoinedAt.IsZero(), Online: d.Online, AgentVersion: d.AgentVersion}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	if !d.LastSeen.IsZero() {
		t := d.LastSeen
		out.LastSeen = &t
	}
	if sp := d.Spool; sp != nil {
		out.Spool = &spoolJSON{Points: sp.Points, Bytes: sp.Bytes, Dropped: sp.Dropped, ReportedAt: sp.ReportedAt}
		if !sp.Oldest.IsZero() {
			t := sp.Oldest
			out.Spool.Oldest = &t
		}
	}
	return out
}

// labelSelector reads the ?label=key=value selector (repeatable); on a
// malformed one it answers 400 and returns false.
func labelSelector(c *gin.Context) (map[string]string, bool) {
	sel := map[string]string{}
	for _, l := range c.QueryArray("label") {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			fail(c, http.StatusBadRequest, "bad_request", fmt.Sprintf("label selector %q must be key=value", l))
			return nil, false
		}
		sel[k] = v
	}
	return sel, true
}

func (a *api) listDevices(c *gin.Context) {
	sel, ok := labelSelector(c)
	if !ok {
		return
	}
	ds, err := a.Devices.List(c.Request.Context(), sel)
	if err != nil {
		a.failErr(c, err)
		return
	}
	out := make([]deviceJSON, len(ds))
	for i, d := range ds {
		out[i] = toDeviceJSON(d)
	}
	c.JSON(http.StatusOK, gin.H{"devices": out})
}

func (a *api) addDevice(c *gin.Context) {
	var req struct {
		ID     string            `json:"id"`
		Labels map[string]string `json:"labels"`
	}
	if !bind(c, &req) {
		return
	}
	e, err := a.Devices.Add(c.Request.Context(), req.ID, req.Labels)
	if err != nil {
		a.failErr(c, err)
		return
	}
	a.enrollment(c, e)
}

func (a *api) newJoinToken(c *gin.Context) {
	e, err := a.Devices.NewJoinToken(c.Request.Context(), c.Param("id"))
	if err != nil {
		a.failErr(c, err)
		return
	}
	a.enrollment(c, e)
}

func (a *api) enrollment(c *gin.Context, e device.Enrollment) {
	hub := a.publicURL(c.Request)
	c.JSON(http.StatusCreated, gin.H{
		"device":                toDeviceJSON(e.Device),
		"join_token":            e.JoinToken,
		"join_token_expires_at": e.ExpiresAt,
		"join_command":          fmt.Sprintf("outpost-agent join --hub %s --token %s --data ./%s", hub, e.JoinToken, e.Device.ID),
	})
}

func (a *api) getDevice(c *gin.Context) {
	d, err := a.Devices.Get(c.Request.Context(), c.Param("id"))
	if err != nil {
		a.failErr(c, err)
		return
	}
	c.JSON(http.StatusOK, toDeviceJSON(d))
}

func (a *api) deleteDevice(c *gin.Context) {
	if err := a.Devices.Delete(c.Request.Context(), c.Param("id")); err != nil {
		a.failErr(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (a *api) join(c *gin.Context) {
	var req struct {
		Token string `json:"token"`
	}
	if !bind(c, &req) {
		return
	}
	if req.Token == "" {
		fail(c, http.StatusBadRequest, "bad_request", "token is required")
		return
	}
	cred, err := a.Devices.Join(c.Request.Context(), req.Token)
	switch {
	case errors.Is(err, store.ErrTokenUnknown), errors.Is(err, store.ErrTokenUsed), errors.Is(err, store.ErrTokenExpired):
		fail(c, http.StatusUnauthorized, "unauthorized", err.Error())
		return
	case err != nil:
		a.failErr(c, err)
		return
	}
	resp := gin.H{
		"device_id":     cred.DeviceID,
		"hub_url":       a.publicURL(c.Request),
		"mqtt_url":      a.mqttURL(c.Request),
		"mqtt_username": cred.DeviceID,
		"mqtt_password": cred.Password,
	}
	if a.OTA != nil {
		if root, ok := a.OTA.RootJSON(); ok {
			resp["tuf_root"] = json.RawMessage(root)
		}
	}
	c.JSON(http.StatusOK, resp)
}

func (a *api) publicURL(r *http.Request) string {
	if a.PublicURL != "" {
		return a.PublicURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (a *api) mqttURL(r *http.Request) string {
	if a.MQTTURL != "" {
		return a.MQTTURL
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(r.Host); err == nil {
		host = h
	}
	return "mqtt://" + net.JoinHostPort(strings.Trim(host, "[]"), a.MQTTPort)
}

// Telemetry query limits.
const (
	defaultLimit = 1000
	maxLimit     = 10000
)

type pointJSON struct {
	Seq    uint64    `json:"seq"`
	Sensor string    `json:"sensor"`
	TS     time.Time `json:"ts"`
	Value  any       `json:"value"`
}

func (a *api) queryTelemetry(c *gin.Context) {
	id := c.Param("id")
	now := time.Now()
	var errs []string
	since, err := parseTime(c.Query("since"), now, now.Add(-time.Hour))
	if err != nil {
		errs = append(errs, "since: "+err.Error())
	}
	// By default nothing is cut off at the end: device clocks may run ahead
	// of the hub's (by up to protocol.MaxClockSkew).
	until, err := parseTime(c.Query("until"), now, now.Add(protocol.MaxClockSkew+time.Minute))
	if err != nil {
		errs = append(errs, "until: "+err.Error())
	}
	limit := defaultLimit
	if s := c.Query("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxLimit {
			errs = append(errs, fmt.Sprintf("limit: must be a whole number from 1 to %d", maxLimit))
		}
		limit = n
	}
	if len(errs) > 0 {
		fail(c, http.StatusBadRequest, "bad_request", strings.Join(errs, "; "))
		return
	}
	if _, err := a.Devices.Get(c.Request.Context(), id); err != nil {
		a.failErr(c, err)
		return
	}
	pts, err := a.Telemetry.Points(c.Request.Context(), store.PointQuery{DeviceID: id, Sensor: c.Query("sensor"), Since: since, Until: until, Limit: limit})
	if err != nil {
		a.failErr(c, err)
		return
	}
	out := make([]pointJSON, len(pts))
	for i, p := range pts {
		out[i] = pointJSON{Seq: p.Seq, Sensor: p.Sensor, TS: p.TS, Value: p.Value()}
	}
	c.JSON(http.StatusOK, gin.H{"device": id, "points": out})
}

// parseTime accepts an RFC 3339 time or a duration back from now ("5m").
func parseTime(s string, now, def time.Time) (time.Time, error) {
	if s == "" {
		return def, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("duration %q must be positive (it means that long ago)", s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration like 5m", s)
	}
	return t, nil
}
