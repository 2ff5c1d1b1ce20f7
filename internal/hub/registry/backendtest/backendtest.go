package backendtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/registry"
	"github.com/outpost-edge/outpost/internal/testutil"
)

// waitTimeout bounds every wait of the suite; TTL expiry on etcd takes up
// to the lease's TTL plus etcd's expiry sweep.
const waitTimeout = 15 * time.Second

// Run runs the suite. newBackend returns a fresh, empty backend for each
// subtest; the suite closes it.
func Run(t *testing.T, newBackend func(t *testing.T) registry.Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, env *env)
	}{
		{"RegisterResolve", testRegisterResolve},
		{"Invalid", testInvalid},
		{"BackendEvents", testBackendEvents},
		{"TTLExpiry", testTTLExpiry},
		{"Renew", testRenew},
		{"Watch", testWatch},
		{"HTTPCheck", testHTTPCheck},
		{"TCPCheck", testTCPCheck},
		{"DeregisterCriticalAfter", testDeregisterCriticalAfter},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBackend(t)
			t.Cleanup(func() {
				if err := b.Close(); err != nil {
					t.Errorf("closing backend: %v", err)
				}
			})
			opts := registry.Options{Backend: b, SweepInterval: 50 * time.Millisecond}
			if tc.name == "DeregisterCriticalAfter" {
				opts.DeregisterCriticalAfter = 300 * time.Millisecond
			}
			svc, err := registry.New(opts)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- svc.Run(ctx) }()
			t.Cleanup(func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run: %v", err)
				}
			})
			tc.fn(t, &env{svc: svc, backend: b, ctx: ctx})
		})
	}
}

type env struct {
	svc     *registry.Service
	backend registry.Backend
	ctx     context.Context
}

func (e *env) register(t *testing.T, in registry.Instance) registry.Instance {
	t.Helper()
	out, err := e.svc.Register(e.ctx, in)
	if err != nil {
		t.Fatalf("Register(%+v): %v", in, err)
	}
	return out
}

func ids(ins []registry.Instance) string {
	s := make([]string, len(ins))
	for i, in := range ins {
		s[i] = in.ID
	}
	return strings.Join(s, ",")
}

func (e *env) wantResolve(t *testing.T, service string, opts registry.ResolveOptions, want string) {
	t.Helper()
	got, err := e.svc.Resolve(e.ctx, service, opts)
	if err != nil {
		t.Fatalf("Resolve(%s, %+v): %v", service, opts, err)
	}
	if ids(got) != want {
		t.Fatalf("Resolve(%s, %+v) = [%s], want [%s]", service, opts, ids(got), want)
	}
}

func agent(service, id string, port int, h registry.Health, tags ...string) registry.Instance {
	return registry.Instance{Service: service, ID: id, Address: "10.0.0.1", Port: port, Tags: tags,
		Source: registry.SourceAgent, Health: h, Device: "dev-1"}
}

func testRegisterResolve(t *testing.T, e *env) {
	e.register(t, agent("web", "web-b", 8081, registry.Passing, "prod", "eu"))
	e.register(t, agent("web", "web-a", 8080, registry.Passing, "prod"))
	e.register(t, agent("web", "web-c", 8082, registry.Warning, "canary"))
	e.register(t, agent("web", "web-d", 8083, registry.Critical, "prod"))
	e.register(t, agent("web-b", "x", 1, registry.Passing))
	ttl := e.register(t, registry.Instance{Service: "db", Address: "10.0.0.2", Port: 5432, TTL: time.Minute})
	if ttl.ID != "10.0.0.2:5432" || ttl.Source != registry.SourceTTL || ttl.Health != registry.Passing {
		t.Fatalf("TTL registration filled ID %q Source %q Health %q, want 10.0.0.2:5432 ttl passing", ttl.ID, ttl.Source, ttl.Health)
	}
	if want := ttl.UpdatedAt.Add(time.Minute); !ttl.ExpiresAt.Equal(want) {
		t.Fatalf("ExpiresAt = %s, want %s", ttl.ExpiresAt, want)
	}

	e.wantResolve(t, "web", registry.ResolveOptions{}, "web-a,web-b")
	e.wantResolve(t, "web", registry.ResolveOptions{IncludeWarning: true}, "web-a,web-b,web-c")
	e.wantResolve(t, "web", registry.ResolveOptions{Tags: []string{"prod"}}, "web-a,web-b")
	e.wantResolve(t, "web", registry.ResolveOptions{Tags: []string{"prod", "eu"}}, "web-b")
	e.wantResolve(t, "web", registry.ResolveOptions{Tags: []string{"canary"}, IncludeWarning: true}, "web-c")
	e.wantResolve(t, "nope", registry.ResolveOptions{}, "")
	e.wantResolve(t, "db", registry.ResolveOptions{}, "10.0.0.2:5432")

	all, err := e.svc.List(e.ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, in := range all {
		keys = append(keys, in.Key())
	}
	if got, want := strings.Join(keys, " "), "db/10.0.0.2:5432 web/web-a web/web-b web/web-c web/web-d web-b/x"; got != want {
		t.Fatalf("List(\"\") = %s, want %s", got, want)
	}
	web, err := e.svc.List(e.ctx, "web")
	if err != nil || ids(web) != "web-a,web-b,web-c,web-d" {
		t.Fatalf("List(web) = [%s], %v", ids(web), err)
	}
	if web[1].Device != "dev-1" || !slices.Equal(web[1].Tags, []string{"prod", "eu"}) {
		t.Fatalf("List(web)[1] = %+v: device or tags lost", web[1])
	}

	// SetHealth moves an agent instance in and out of the resolved set.
	if err := e.svc.SetHealth(e.ctx, "web", "web-a", registry.Critical, "probe failed"); err != nil {
		t.Fatal(err)
	}
	e.wantResolve(t, "web", registry.ResolveOptions{}, "web-b")
	if err := e.svc.SetHealth(e.ctx, "web", "web-d", registry.Passing, ""); err != nil {
		t.Fatal(err)
	}
	e.wantResolve(t, "web", registry.ResolveOptions{}, "web-b,web-d")
	if err := e.svc.SetHealth(e.ctx, "web", "nope", registry.Passing, ""); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("SetHealth(missing) = %v, want ErrNotFound", err)
	}
	if err := e.svc.SetHealth(e.ctx, "web", "web-a", "bogus", ""); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("SetHealth(bogus) = %v, want ErrInvalid", err)
	}

	// Registering the same id again replaces the instance.
	e.register(t, agent("web", "web-b", 9999, registry.Passing, "prod"))
	got, err := e.backend.Get(e.ctx, "web", "web-b")
	if err != nil || got.Port != 9999 || len(got.Tags) != 1 {
		t.Fatalf("Get after re-register = %+v, %v", got, err)
	}

	if err := e.svc.Deregister(e.ctx, "web", "web-b"); err != nil {
		t.Fatal(err)
	}
	e.wantResolve(t, "web", registry.ResolveOptions{}, "web-d")
	if err := e.svc.Deregister(e.ctx, "web", "web-b"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("second Deregister = %v, want ErrNotFound", err)
	}
	if _, err := e.backend.Get(e.ctx, "web", "web-b"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("Get(deregistered) = %v, want ErrNotFound", err)
	}
	if err := e.backend.Delete(e.ctx, "web", "web-b"); err != nil {
		t.Fatalf("backend Delete(missing) = %v, want nil", err)
	}
}

func testInvalid(t *testing.T, e *env) {
	tests := []struct {
		name string
		in   registry.Instance
		want []string // substrings of the error, one per problem
	}{
		{"every problem", registry.Instance{Service: "Bad_Name", Address: "", Port: 0, TTL: -time.Second, Tags: []string{""}},
			[]string{`service "Bad_Name"`, `address ""`, "port 0", "ttl -1s", `tag ""`, "ttl or check: one is required"}},
		{"ttl and check", registry.Instance{Service: "web", Address: "10.0.0.1", Port: 80, TTL: time.Second, Check: &registry.Check{Type: "tcp"}},
			[]string{"give one, not both"}},
		{"bad check", registry.Instance{Service: "web", Address: "10.0.0.1", Port: 80, Check: &registry.Check{Type: "udp", Interval: time.Second, Timeout: 2 * time.Second}},
			[]string{`check type "udp"`, "must not exceed the interval"}},
		{"bad path", registry.Instance{Service: "web", Address: "10.0.0.1", Port: 80, Check: &registry.Check{Type: "http", Path: "health"}},
			[]string{`check path "health"`}},
		{"agent without health", registry.Instance{Service: "web", ID: "a b", Address: "10.0.0.1", Port: 70000, Source: registry.SourceAgent},
			[]string{"health: required", `id "a b"`, "port 70000"}},
		{"source mismatch", registry.Instance{Service: "web", Address: "10.0.0.1", Port: 80, TTL: time.Second, Source: registry.SourceAgent, Device: "d"},
			[]string{`source "agent"`, "device: only agent"}},
		{"service ends with dash", registry.Instance{Service: "web-", Address: "host..", Port: 80, TTL: time.Second, Health: "sick"},
			[]string{`service "web-"`, `address "host.."`, `health "sick"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.svc.Register(e.ctx, tc.in)
			if !errors.Is(err, registry.ErrInvalid) {
				t.Fatalf("Register = %v, want ErrInvalid", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	all, err := e.svc.List(e.ctx, "")
	if err != nil || len(all) != 0 {
		t.Fatalf("List after invalid registrations = %d instances, %v; want none", len(all), err)
	}
	if _, err := e.svc.Resolve(e.ctx, "Bad_Name", registry.ResolveOptions{}); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("Resolve(Bad_Name) = %v, want ErrInvalid", err)
	}
}

// testBackendEvents checks the backend's own Watch: puts and deletes of the
// watched service only, in order.
func testBackendEvents(t *testing.T, e *env) {
	ctx, cancel := context.WithCancel(e.ctx)
	ch, err := e.backend.Watch(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	e.register(t, agent("other", "o", 1, registry.Passing))
	e.register(t, agent("web", "a", 1, registry.Passing))
	if err := e.svc.Deregister(e.ctx, "web", "a"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"put web/a", "delete web/a"} {
		select {
		case ev := <-ch:
			if got := fmt.Sprintf("%s %s", ev.Type, ev.Instance.Key()); got != want {
				t.Fatalf("event %q, want %q", got, want)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("no event %q", want)
		}
	}
	cancel()
	waitClosed(t, ch)
}

func waitClosed[T any](t *testing.T, ch <-chan T) {
	t.Helper()
	timeout := time.After(waitTimeout)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("channel not closed after its context ended")
		}
	}
}

func testTTLExpiry(t *testing.T, e *env) {
	in := e.register(t, registry.Instance{Service: "api", ID: "short", Address: "10.0.0.3", Port: 80, TTL: time.Second})
	e.register(t, registry.Instance{Service: "api", ID: "long", Address: "10.0.0.4", Port: 80, TTL: time.Hour})
	e.wantResolve(t, "api", registry.ResolveOptions{}, "long,short")
	testutil.Eventually(t, waitTimeout, func() error {
		got, err := e.svc.Resolve(e.ctx, "api", registry.ResolveOptions{})
		if err != nil {
			return err
		}
		if ids(got) != "long" {
			return fmt.Errorf("resolved [%s], want [long]", ids(got))
		}
		return nil
	})
	// Critical (built-in) or gone (etcd deletes it with its lease).
	testutil.Eventually(t, waitTimeout, func() error {
		got, err := e.backend.Get(e.ctx, in.Service, in.ID)
		if errors.Is(err, registry.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if got.Health != registry.Critical || got.Output != "TTL expired" {
			return fmt.Errorf("expired instance is %s %q, want critical \"TTL expired\" or gone", got.Health, got.Output)
		}
		return nil
	})
}

func testRenew(t *testing.T, e *env) {
	in := e.register(t, registry.Instance{Service: "api", ID: "r", Address: "10.0.0.3", Port: 80, TTL: 2 * time.Second})
	// Renew every 300ms for two and a half TTLs; the instance must stay resolved
	// all along.
	end := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(end) {
		<-tick.C
		got, err := e.svc.Renew(e.ctx, in.Service, in.ID)
		if err != nil {
			t.Fatalf("Renew: %v", err)
		}
		if got.Health != registry.Passing || !got.ExpiresAt.After(time.Now().Add(time.Second)) {
			t.Fatalf("Renew returned health %s, expires %s", got.Health, got.ExpiresAt)
		}
		e.wantResolve(t, "api", registry.ResolveOptions{}, "r")
	}
	if _, err := e.svc.Renew(e.ctx, "api", "missing"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("Renew(missing) = %v, want ErrNotFound", err)
	}
	e.register(t, agent("api", "agent", 1, registry.Passing))
	if _, err := e.svc.Renew(e.ctx, "api", "agent"); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("Renew(agent instance) = %v, want ErrInvalid", err)
	}
}

func testWatch(t *testing.T, e *env) {
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	e.register(t, agent("web", "a", 1, registry.Passing))
	ch, err := e.svc.Watch(ctx, "web", registry.ResolveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tagged, err := e.svc.Watch(ctx, "web", registry.ResolveOptions{Tags: []string{"blue"}, IncludeWarning: true})
	if err != nil {
		t.Fatal(err)
	}
	next := func(ch <-chan []registry.Instance, want string) {
		t.Helper()
		select {
		case snap, ok := <-ch:
			if !ok {
				t.Fatalf("watch closed, want [%s]", want)
			}
			if ids(snap) != want {
				t.Fatalf("snapshot [%s], want [%s]", ids(snap), want)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("no snapshot, want [%s]", want)
		}
	}
	next(ch, "a")
	next(tagged, "")

	e.register(t, agent("web", "b", 2, registry.Passing, "blue"))
	next(ch, "a,b")
	next(tagged, "b")
	e.register(t, agent("other", "x", 1, registry.Passing, "blue")) // another service: no snapshot
	if err := e.svc.SetHealth(e.ctx, "web", "b", registry.Warning, "slow"); err != nil {
		t.Fatal(err)
	}
	next(ch, "a")
	next(tagged, "b") // health changed within the set: a new snapshot
	if err := e.svc.SetHealth(e.ctx, "web", "a", registry.Critical, "down"); err != nil {
		t.Fatal(err)
	}
	next(ch, "")
	if err := e.svc.SetHealth(e.ctx, "web", "b", registry.Passing, ""); err != nil {
		t.Fatal(err)
	}
	next(ch, "b")
	next(tagged, "b")
	if err := e.svc.Deregister(e.ctx, "web", "b"); err != nil {
		t.Fatal(err)
	}
	next(ch, "")
	next(tagged, "")

	cancel()
	waitClosed(t, ch)
	waitClosed(t, tagged)
}

func resolvedHealth(t *testing.T, e *env, service, id string, want registry.Health, output string) {
	t.Helper()
	testutil.Eventually(t, waitTimeout, func() error {
		got, err := e.backend.Get(e.ctx, service, id)
		if err != nil {
			return err
		}
		if got.Health != want || !strings.Contains(got.Output, output) {
			return fmt.Errorf("instance is %s %q, want %s with %q", got.Health, got.Output, want, output)
		}
		res, err := e.svc.Resolve(e.ctx, service, registry.ResolveOptions{})
		if err != nil {
			return err
		}
		if resolved := slices.ContainsFunc(res, func(in registry.Instance) bool { return in.ID == id }); resolved != (want == registry.Passing) {
			return fmt.Errorf("resolved = %v with health %s", resolved, want)
		}
		return nil
	})
}

func hostPort(t *testing.T, addr string) (string, int) {
	t.Helper()
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return host, port
}

func testHTTPCheck(t *testing.T, e *env) {
	var failing atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		if failing.Load() {
			http.Error(w, "broken", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	host, port := hostPort(t, srv.Listener.Addr().String())
	in := e.register(t, registry.Instance{Service: "web", Address: host, Port: port,
		Check: &registry.Check{Type: "http", Path: "/healthz", Interval: 100 * time.Millisecond, Timeout: 100 * time.Millisecond}})
	if in.Source != registry.SourceCheck || in.Health != registry.Critical {
		t.Fatalf("check registration is %s %s, want check critical until the first check", in.Source, in.Health)
	}
	resolvedHealth(t, e, "web", in.ID, registry.Passing, "204")
	failing.Store(true)
	resolvedHealth(t, e, "web", in.ID, registry.Critical, "500")
	failing.Store(false)
	resolvedHealth(t, e, "web", in.ID, registry.Passing, "204")
	srv.Close()
	resolvedHealth(t, e, "web", in.ID, registry.Critical, "HTTP GET")
}

func testTCPCheck(t *testing.T, e *env) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	defer func() { ln.Close(); <-accepted }()
	host, port := hostPort(t, ln.Addr().String())
	in := e.register(t, registry.Instance{Service: "db", Address: host, Port: port,
		Check: &registry.Check{Type: "tcp", Interval: 100 * time.Millisecond}})
	resolvedHealth(t, e, "db", in.ID, registry.Passing, "success")
	ln.Close()
	<-accepted
	resolvedHealth(t, e, "db", in.ID, registry.Critical, "TCP connect")
}

func testDeregisterCriticalAfter(t *testing.T, e *env) {
	// A port nothing listens on: the check fails at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host, port := hostPort(t, ln.Addr().String())
	ln.Close()
	dead := e.register(t, registry.Instance{Service: "db", Address: host, Port: port,
		Check: &registry.Check{Type: "tcp", Interval: 100 * time.Millisecond}})
	e.register(t, agent("db", "agent", 1, registry.Critical))
	testutil.Eventually(t, waitTimeout, func() error {
		_, err := e.backend.Get(e.ctx, "db", dead.ID)
		if errors.Is(err, registry.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("critical check instance still registered (%v)", err)
	})
	// Agent instances are the hub's to remove.
	if _, err := e.backend.Get(e.ctx, "db", "agent"); err != nil {
		t.Fatalf("critical agent instance: %v", err)
	}
}
