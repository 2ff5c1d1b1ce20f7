package discovery

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/outpost-edge/outpost/internal/testutil"

	apiv1 "github.com/outpost-edge/outpost/gen/outpost/api/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	passing  = apiv1.Health_HEALTH_PASSING
	warning  = apiv1.Health_HEALTH_WARNING
	critical = apiv1.Health_HEALTH_CRITICAL
)

// newClient returns a Client of the registry at addr, closed when the test
// ends.
func newClient(t *testing.T, addr, token string) *Client {
	t.Helper()
	c, err := New(addr, token)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ids(ins []Instance) []string {
	out := []string{}
	for _, in := range ins {
		out = append(out, in.ID)
	}
	return out
}

func TestResolve(t *testing.T) {
	f, addr := startFakeRegistry(t)
	f.put(
		instance(t, "echo", "a", "10.0.0.1:7000", passing, "v1"),
		instance(t, "echo", "b", "10.0.0.2:7000", warning, "v1"),
		instance(t, "echo", "c", "10.0.0.3:7000", critical, "v1"),
		instance(t, "echo", "d", "10.0.0.4:7000", passing, "v2"),
		instance(t, "other", "e", "10.0.0.5:7000", passing),
	)
	c := newClient(t, addr, testToken)

	tests := []struct {
		name string
		opts []ResolveOption
		want []string
	}{
		{"passing only", nil, []string{"a", "d"}},
		{"with warning", []ResolveOption{IncludeWarning()}, []string{"a", "b", "d"}},
		{"tag", []ResolveOption{WithTags("v1")}, []string{"a"}},
		{"tag with warning", []ResolveOption{WithTags("v1"), IncludeWarning()}, []string{"a", "b"}},
		{"no match", []ResolveOption{WithTags("v1", "v2")}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Resolve(t.Context(), "echo", tt.opts...)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if !slices.Equal(ids(got), tt.want) {
				t.Fatalf("Resolve = %v, want %v", ids(got), tt.want)
			}
		})
	}

	got, err := c.Resolve(t.Context(), "echo", WithTags("v2"))
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if len(got) != 1 || got[0].Addr() != "10.0.0.4:7000" || got[0].Health != HealthPassing || got[0].Service != "echo" {
		t.Fatalf("Resolve = %+v, want echo/d at 10.0.0.4:7000 passing", got)
	}

	if _, err := c.Resolve(t.Context(), ""); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Resolve(\"\") = %v, want ErrInvalidArgument", err)
	}
}

func TestBearerToken(t *testing.T) {
	f, addr := startFakeRegistry(t)
	tests := []struct {
		name  string
		token string
		code  codes.Code
	}{
		{"right token", testToken, codes.OK},
		{"wrong token", "nope", codes.Unauthenticated},
		{"no token", "", codes.Unauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, addr, tt.token)
			_, err := c.Resolve(t.Context(), "echo")
			if got := status.Code(err); got != tt.code {
				t.Fatalf("Resolve error %v, want code %s", err, tt.code)
			}
		})
	}
	_, _, auth := f.stats()
	want := []string{"Bearer " + testToken, "Bearer nope"}
	if !slices.Equal(auth, want) {
		t.Fatalf("authorization headers seen %q, want %q", auth, want)
	}
}

func TestRegisterKeepAliveDeregister(t *testing.T) {
	f, addr := startFakeRegistry(t)
	c := newClient(t, addr, testToken)

	in, err := c.Register(t.Context(), Registration{
		Service: "echo", Address: "127.0.0.1", Port: 7000,
		Tags: []string{"v1"}, Meta: map[string]string{"zone": "a"}, TTL: 10 * time.Second,
	})
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if in.ID != "127.0.0.1:7000" || in.TTL != 10*time.Second || in.Meta["zone"] != "a" || in.Health != HealthPassing {
		t.Fatalf("Register = %+v", in)
	}
	got, err := c.Resolve(t.Context(), "echo")
	if err != nil || len(got) != 1 || got[0].ID != in.ID {
		t.Fatalf("Resolve after Register = %+v, %v", got, err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	kaDone := make(chan error, 1)
	go func() { kaDone <- c.KeepAlive(ctx, "echo", in.ID, 10*time.Millisecond) }()
	testutil.Eventually(t, 2*time.Second, func() error {
		if _, renews, _ := f.stats(); renews < 3 {
			return fmt.Errorf("%d renewals", renews)
		}
		return nil
	})
	cancel()
	if err := <-kaDone; err != nil {
		t.Fatalf("KeepAlive after cancel = %v, want nil", err)
	}

	if err := c.Deregister(t.Context(), "echo", in.ID); err != nil {
		t.Fatalf("Deregister: %v", err)
	}
	if got, err := c.Resolve(t.Context(), "echo"); err != nil || len(got) != 0 {
		t.Fatalf("Resolve after Deregister = %+v, %v", got, err)
	}

	// The hub forgot the instance: KeepAlive says so instead of renewing
	// into the void.
	err = c.KeepAlive(t.Context(), "echo", in.ID, 10*time.Millisecond)
	if !errors.Is(err, ErrNotRegistered) {
		t.Fatalf("KeepAlive of a deregistered instance = %v, want ErrNotRegistered", err)
	}

	if _, err := c.Register(t.Context(), Registration{Service: "echo", Address: "127.0.0.1"}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Register without port = %v, want ErrInvalidArgument", err)
	}
	if err := c.KeepAlive(t.Context(), "echo", "x", 0); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("KeepAlive every 0 = %v, want ErrInvalidArgument", err)
	}
}

// next receives one snapshot or fails the test.
func next(t *testing.T, ch <-chan []Instance) []Instance {
	t.Helper()
	select {
	case snap, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return snap
	case <-time.After(5 * time.Second):
		t.Fatal("no snapshot within 5s")
		return nil
	}
}

func TestWatchReconnects(t *testing.T) {
	f, addr := startFakeRegistry(t)
	f.put(instance(t, "echo", "a", "10.0.0.1:7000", passing))
	c := newClient(t, addr, testToken)

	ctx, cancel := context.WithCancel(t.Context())
	ch, err := c.Watch(ctx, "echo")
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if got := ids(next(t, ch)); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("first snapshot %v, want [a]", got)
	}

	f.put(instance(t, "echo", "b", "10.0.0.2:7000", passing))
	if got := ids(next(t, ch)); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("snapshot after put %v, want [a b]", got)
	}

	// Break the stream; once it is reopened, a change arrives through it.
	f.breakWatches()
	testutil.Eventually(t, 5*time.Second, func() error {
		if opens, _, _ := f.stats(); opens < 2 {
			return fmt.Errorf("%d watch streams opened, want a reconnect", opens)
		}
		return nil
	})
	f.put(instance(t, "echo", "a", "10.0.0.1:7000", critical))
	testutil.Eventually(t, 5*time.Second, func() error {
		select {
		case snap := <-ch:
			if got := ids(snap); !slices.Equal(got, []string{"b"}) {
				return fmt.Errorf("snapshot %v, want [b]", got)
			}
			return nil
		default:
			return errors.New("no snapshot yet")
		}
	})

	cancel()
	for range ch { // Drain until Watch closes the channel.
	}
}

func TestWatchInvalid(t *testing.T) {
	_, addr := startFakeRegistry(t)
	c := newClient(t, addr, testToken)
	if _, err := c.Watch(t.Context(), ""); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Watch(\"\") = %v, want ErrInvalidArgument", err)
	}
	_ = c.Close()
	if _, err := c.Watch(t.Context(), "echo"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Watch after Close = %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

func TestWatchEndsOnClose(t *testing.T) {
	_, addr := startFakeRegistry(t)
	c := newClient(t, addr, testToken)
	ch, err := c.Watch(t.Context(), "echo")
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	next(t, ch)
	_ = c.Close()
	testutil.Eventually(t, 5*time.Second, func() error {
		select {
		case _, ok := <-ch:
			if ok {
				return errors.New("still open")
			}
			return nil
		default:
			return errors.New("still open")
		}
	})
}

func TestBearerTokenTransportSecurity(t *testing.T) {
	tests := []struct {
		name string
		opts []Option
		want bool
	}{
		{"plaintext", nil, false},
		{"tls", []Option{WithTLS(&tls.Config{MinVersion: tls.VersionTLS12})}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// New refuses the per-RPC credentials if they disagree with the
			// transport, so building a client is the check.
			c, err := New("127.0.0.1:1", "tok", tt.opts...)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer c.Close()
			md, err := bearerToken{token: "tok", secure: tt.want}.GetRequestMetadata(t.Context())
			if err != nil || md["authorization"] != "Bearer tok" {
				t.Fatalf("metadata %v, %v", md, err)
			}
		})
	}
	// The check being avoided: a token that requires transport security on
	// a plaintext connection is refused.
	_, err := New("127.0.0.1:1", "tok", WithTLS(&tls.Config{MinVersion: tls.VersionTLS12}),
		WithDialOptions(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err == nil {
		t.Fatal("New with a secure token over plaintext succeeded")
	}
	if _, err := New("", "tok"); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("New without address = %v, want ErrInvalidArgument", err)
	}
}
