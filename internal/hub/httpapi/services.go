package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/outpost-edge/outpost/internal/hub/registry"
)

// ServiceRegistry is the service registry as the API uses it.
type ServiceRegistry interface {
	Register(ctx context.Context, in registry.Instance) (registry.Instance, error)
	Deregister(ctx context.Context, service, id string) error
	Renew(ctx context.Context, service, id string) (registry.Instance, error)
	Resolve(ctx context.Context, service string, opts registry.ResolveOptions) ([]registry.Instance, error)
	Watch(ctx context.Context, service string, opts registry.ResolveOptions) (<-chan []registry.Instance, error)
	// List returns the instances of service ("" for every service) in
	// any health.
	List(ctx context.Context, service string) ([]registry.Instance, error)
}

// The hub's registry is what the API serves.
var _ ServiceRegistry = (*registry.Service)(nil)

// sseKeepAlive is how often an idle watch stream gets a comment line, so
// that proxies keep it open and a vanished client is noticed.
const sseKeepAlive = 15 * time.Second

// registerServiceRoutes mounts /services when there is a registry.
func (a *api) registerServiceRoutes(authed *gin.RouterGroup) {
	if a.Registry == nil {
		return
	}
	authed.GET("/services", a.listServices)
	authed.GET("/services/:name", a.resolveService)
	authed.GET("/services/:name/watch", a.watchService)
	authed.POST("/services/:name/instances", a.registerInstance)
	authed.PUT("/services/:name/instances/:id/renew", a.renewInstance)
	authed.DELETE("/services/:name/instances/:id", a.deregisterInstance)
}

// instanceJSON is an instance as the API shows it: registry.Instance with
// durations as Go duration strings ("30s") rather than nanoseconds.
type instanceJSON struct {
	Service   string            `json:"service"`
	ID        string            `json:"id"`
	Address   string            `json:"address"`
	Port      int               `json:"port"`
	Tags      []string          `json:"tags"`
	Meta      map[string]string `json:"meta"`
	Health    registry.Health   `json:"health"`
	Output    string            `json:"output,omitempty"`
	Source    string            `json:"source"`
	Device    string            `json:"device,omitempty"`
	TTL       string            `json:"ttl,omitempty"`
	Check     *checkJSON        `json:"check,omitempty"`
	ExpiresAt *time.Time        `json:"expires_at,omitempty"`
	// CriticalSince is when the instance last turned critical; absent
	// while it is not critical.
	CriticalSince *time.Time `json:"critical_since,omitempty"`
	UpdatedAt     time.Time  `json:"updated_at"`
}

type checkJSON struct {
	Type     string `json:"type"`
	Path     string `json:"path,omitempty"`
	Interval string `json:"interval,omitempty"`
	Timeout  string `json:"timeout,omitempty"`
}

func toInstanceJSON(in registry.Instance) instanceJSON {
	out := instanceJSON{
		Service: in.Service, ID: in.ID, Address: in.Address, Port: in.Port, Tags: in.Tags, Meta: in.Meta,
		Health: in.Health, Output: in.Output, Source: in.Source, Device: in.Device, UpdatedAt: in.UpdatedAt,
	}
	if out.Tags == nil {
		out.Tags = []string{}
	}
	if out.Meta == nil {
		out.Meta = map[string]string{}
	}
	if in.TTL > 0 {
		out.TTL = in.TTL.String()
	}
	if c := in.Check; c != nil {
		out.Check = &checkJSON{Type: c.Type, Path: c.Path}
		if c.Interval > 0 {
			out.Check.Interval = c.Interval.String()
		}
		if c.Timeout > 0 {
			out.Check.Timeout = c.Timeout.String()
		}
	}
	if !in.ExpiresAt.IsZero() {
		t := in.ExpiresAt
		out.ExpiresAt = &t
	}
	if !in.CriticalSince.IsZero() {
		t := in.CriticalSince
		out.CriticalSince = &t
	}
	return out
}

func toInstancesJSON(ins []registry.Instance) []instanceJSON {
	out := make([]instanceJSON, len(ins))
	for i, in := range ins {
		out[i] = toInstanceJSON(in)
	}
	return out
}

// serviceSummary is one entry of GET /services.
type serviceSummary struct {
	Name      string `json:"name"`
	Instances int    `json:"instances"`
	Passing   int    `json:"passing"`
}

func (a *api) listServices(c *gin.Context) {
	all, err := a.Registry.List(c.Request.Context(), "")
	if err != nil {
		a.failRegistry(c, err)
		return
	}
	// List sorts by service, so each service's instances are adjacent.
	out := []serviceSummary{}
	for _, in := range all {
		if len(out) == 0 || out[len(out)-1].Name != in.Service {
			out = append(out, serviceSummary{Name: in.Service})
		}
		s := &out[len(out)-1]
		s.Instances++
		if in.Health == registry.Passing {
			s.Passing++
		}
	}
	c.JSON(http.StatusOK, gin.H{"services": out})
}

// resolveService answers the passing instances carrying every ?tag=, or
// with ?all=true every instance in any health.
func (a *api) resolveService(c *gin.Context) {
	name := c.Param("name")
	tags := c.QueryArray("tag")
	var (
		ins []registry.Instance
		err error
	)
	switch c.Query("all") {
	case "true", "1":
		ins, err = a.Registry.List(c.Request.Context(), name)
		ins = withTags(ins, tags)
	case "", "false", "0":
		ins, err = a.Registry.Resolve(c.Request.Context(), name, registry.ResolveOptions{Tags: tags})
	default:
		fail(c, http.StatusBadRequest, "bad_request", "all: want true or false")
		return
	}
	if err != nil {
		a.failRegistry(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"service": name, "instances": toInstancesJSON(ins)})
}

// withTags keeps the instances that carry every tag.
func withTags(ins []registry.Instance, tags []string) []registry.Instance {
	out := []registry.Instance{}
	for _, in := range ins {
		missing := slices.ContainsFunc(tags, func(t string) bool { return !slices.Contains(in.Tags, t) })
		if !missing {
			out = append(out, in)
		}
	}
	return out
}

// registerRequest is the body of POST /services/:name/instances: ttl (a
// Go duration) or check, not both.
type registerRequest struct {
	ID      string            `json:"id"`
	Address string            `json:"address"`
	Port    int               `json:"port"`
	Tags    []string          `json:"tags"`
	Meta    map[string]string `json:"meta"`
	TTL     string            `json:"ttl"`
	Check   *struct {
		Type     string `json:"type"`
		Path     string `json:"path"`
		Interval string `json:"interval"`
		Timeout  string `json:"timeout"`
	} `json:"check"`
}

func (req registerRequest) instance(service string) (registry.Instance, error) {
	in := registry.Instance{Service: service, ID: req.ID, Address: req.Address, Port: req.Port, Tags: req.Tags, Meta: req.Meta}
	var errs []error
	duration := func(name, s string) time.Duration {
		if s == "" {
			return 0
		}
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("%s %q: want a positive duration such as 10s", name, s))
		}
		return d
	}
	in.TTL = duration("ttl", req.TTL)
	if req.Check != nil {
		in.Check = &registry.Check{
			Type: req.Check.Type, Path: req.Check.Path,
			Interval: duration("check interval", req.Check.Interval), Timeout: duration("check timeout", req.Check.Timeout),
		}
	}
	if req.TTL == "" && req.Check == nil {
		errs = append(errs, errors.New("ttl or check: give one"))
	}
	return in, errors.Join(errs...)
}

func (a *api) registerInstance(c *gin.Context) {
	var req registerRequest
	if !bind(c, &req) {
		return
	}
	in, err := req.instance(c.Param("name"))
	if err != nil {
		fail(c, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	in, err = a.Registry.Register(c.Request.Context(), in)
	if err != nil {
		a.failRegistry(c, err)
		return
	}
	c.JSON(http.StatusCreated, toInstanceJSON(in))
}

func (a *api) renewInstance(c *gin.Context) {
	in, err := a.Registry.Renew(c.Request.Context(), c.Param("name"), c.Param("id"))
	if err != nil {
		a.failRegistry(c, err)
		return
	}
	c.JSON(http.StatusOK, toInstanceJSON(in))
}

func (a *api) deregisterInstance(c *gin.Context) {
	if err := a.Registry.Deregister(c.Request.Context(), c.Param("name"), c.Param("id")); err != nil {
		a.failRegistry(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// watchService streams the resolved instances as Server-Sent Events: an
// "instances" event with the whole snapshot at once and after every
// change, until the client goes away.
func (a *api) watchService(c *gin.Context) {
	// The stream ends when the client goes or the server shuts down.
	ctx, cancel := context.WithCancel(c.Request.Context())
	defer cancel()
	ch, err := a.Registry.Watch(ctx, c.Param("name"), registry.ResolveOptions{Tags: c.QueryArray("tag")})
	if err != nil {
		a.failRegistry(c, err)
		return
	}
	// Stop the watch and drain ch so that the registry's watch goroutine
	// has ended when the handler returns.
	defer func() {
		cancel()
		for range ch {
		}
	}()
	stream := openSSE(c)
	defer stream.close()
	for {
		select {
		case ins, ok := <-ch:
			if !ok {
				return
			}
			b, err := json.Marshal(gin.H{"service": c.Param("name"), "instances": toInstancesJSON(ins)})
			if err != nil {
				a.logger.Error("encoding a watch snapshot", "err", err)
				return
			}
			if !stream.send("instances", b) {
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

// failRegistry maps a registry error to a status and code.
func (a *api) failRegistry(c *gin.Context, err error) {
	switch {
	case errors.Is(err, registry.ErrInvalid):
		fail(c, http.StatusBadRequest, "bad_request", err.Error())
	case errors.Is(err, registry.ErrNotFound):
		fail(c, http.StatusNotFound, "not_found", err.Error())
	default:
		a.failErr(c, err)
	}
}
