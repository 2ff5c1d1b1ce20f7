package registry_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/registry"
	"github.com/outpost-edge/outpost/internal/hub/store/sqlite"
	"github.com/outpost-edge/outpost/internal/testutil"
)

func TestParseRegistryURL(t *testing.T) {
	tests := []struct {
		in   string
		want registry.BackendConfig
		err  bool
	}{
		{"", registry.BackendConfig{Kind: registry.KindBuiltin}, false},
		{"builtin", registry.BackendConfig{Kind: registry.KindBuiltin}, false},
		{"etcd://127.0.0.1:2379", registry.BackendConfig{Kind: registry.KindEtcd, Endpoints: []string{"http://127.0.0.1:2379"}, Prefix: "/outpost/registry/"}, false},
		{"etcd://a:2379,b:2380/", registry.BackendConfig{Kind: registry.KindEtcd, Endpoints: []string{"http://a:2379", "http://b:2380"}, Prefix: "/outpost/registry/"}, false},
		{"etcd://a:2379/site/one", registry.BackendConfig{Kind: registry.KindEtcd, Endpoints: []string{"http://a:2379"}, Prefix: "/site/one/"}, false},
		{"etcd://[::1]:2379/p/", registry.BackendConfig{Kind: registry.KindEtcd, Endpoints: []string{"http://[::1]:2379"}, Prefix: "/p/"}, false},
		{"etcd://", registry.BackendConfig{}, true},
		{"etcd://a", registry.BackendConfig{}, true},
		{"etcd://a:0", registry.BackendConfig{}, true},
		{"etcd://a:2379,", registry.BackendConfig{}, true},
		{"consul://a:8500", registry.BackendConfig{}, true},
		{"etcds://a:2379", registry.BackendConfig{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := registry.ParseRegistryURL(tc.in)
			if tc.err {
				if !errors.Is(err, registry.ErrInvalid) {
					t.Fatalf("ParseRegistryURL(%q) = %+v, %v; want ErrInvalid", tc.in, got, err)
				}
				return
			}
			if err != nil || got.Kind != tc.want.Kind || got.Prefix != tc.want.Prefix || !slices.Equal(got.Endpoints, tc.want.Endpoints) {
				t.Fatalf("ParseRegistryURL(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestOpen(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "outpost.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	b, err := registry.Open(t.Context(), "builtin", st)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.(*registry.StoreBackend); !ok {
		t.Fatalf("Open(builtin) = %T", b)
	}
	if _, err := registry.Open(t.Context(), "builtin", nil); err == nil {
		t.Fatal("Open(builtin) without a store succeeded")
	}
	if _, err := registry.Open(t.Context(), "zookeeper://x", st); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("Open(zookeeper) = %v, want ErrInvalid", err)
	}
	if _, err := registry.New(registry.Options{}); err == nil {
		t.Fatal("New without a backend succeeded")
	}
	if _, err := registry.New(registry.Options{Backend: b, SweepInterval: -time.Second}); err == nil {
		t.Fatal("New with a negative sweep interval succeeded")
	}
	if _, err := registry.New(registry.Options{Backend: b, DeregisterCriticalAfter: -time.Second}); err == nil {
		t.Fatal("New with a negative DeregisterCriticalAfter succeeded")
	}
}

// clock is a settable clock for the sweeper tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestSweeperClock drives TTL expiry and DeregisterCriticalAfter with a
// fake clock: nothing expires until the clock passes ExpiresAt, and the
// critical instance goes only DeregisterCriticalAfter later.
func TestSweeperClock(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "outpost.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	svc, err := registry.New(registry.Options{
		Backend: registry.NewStoreBackend(st), Now: clk.Now,
		SweepInterval: 10 * time.Millisecond, DeregisterCriticalAfter: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() { cancel(); <-done }()

	in, err := svc.Register(ctx, registry.Instance{Service: "api", ID: "a", Address: "10.0.0.1", Port: 80, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	// Sentinel b expires earlier: once it is critical a sweep has seen the
	// clock past 59s, and a must still be passing.
	if _, err := svc.Register(ctx, registry.Instance{Service: "other", ID: "b", Address: "10.0.0.1", Port: 80, TTL: 30 * time.Second}); err != nil {
		t.Fatal(err)
	}
	health := func() (registry.Instance, error) {
		all, err := svc.List(ctx, "api")
		if err != nil || len(all) != 1 {
			return registry.Instance{}, errors.New("instance gone")
		}
		return all[0], nil
	}
	clk.Add(59 * time.Second)
	testutil.Eventually(t, 5*time.Second, func() error {
		all, err := svc.List(ctx, "other")
		if err != nil || len(all) != 1 || all[0].Health != registry.Critical {
			return errors.New("sentinel not expired yet")
		}
		return nil
	})
	if got, err := health(); err != nil || got.Health != registry.Passing {
		t.Fatalf("before ExpiresAt: %+v, %v", got, err)
	}
	clk.Add(2 * time.Second)
	testutil.Eventually(t, 5*time.Second, func() error {
		got, err := health()
		if err != nil {
			return err
		}
		if got.Health != registry.Critical || got.Output != "TTL expired" || !got.CriticalSince.Equal(clk.Now()) {
			return errors.New("not expired yet: " + string(got.Health))
		}
		return nil
	})
	res, err := svc.Resolve(ctx, "api", registry.ResolveOptions{})
	if err != nil || len(res) != 0 {
		t.Fatalf("Resolve after expiry = %v, %v", res, err)
	}
	// Renew brings it back.
	got, err := svc.Renew(ctx, "api", in.ID)
	if err != nil || got.Health != registry.Passing || !got.CriticalSince.IsZero() || !got.ExpiresAt.Equal(clk.Now().Add(time.Minute)) {
		t.Fatalf("Renew = %+v, %v", got, err)
	}
	clk.Add(2 * time.Minute)
	testutil.Eventually(t, 5*time.Second, func() error {
		got, err := health()
		if err != nil || got.Health != registry.Critical {
			return errors.New("not critical")
		}
		return nil
	})
	clk.Add(59 * time.Minute)
	if _, err := health(); err != nil {
		t.Fatalf("deregistered before DeregisterCriticalAfter: %v", err)
	}
	clk.Add(2 * time.Minute)
	testutil.Eventually(t, 5*time.Second, func() error {
		if _, err := health(); err == nil {
			return errors.New("still registered")
		}
		return nil
	})
}
