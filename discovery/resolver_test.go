package discovery

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/outpost-edge/outpost/internal/testutil"
)

// failoverWindow is how soon after an instance dies every call must
// succeed again (the requirement).
const failoverWindow = 2 * time.Second

// dialEcho returns a round-robin ClientConn to target through c's resolver.
func dialEcho(t *testing.T, c *Client, target string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(target,
		grpc.WithResolvers(NewResolverBuilder(c)),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	)
	if err != nil {
		t.Fatalf("NewClient(%s): %v", target, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// callEcho makes one call and returns the name of the server that answered.
func callEcho(ctx context.Context, conn *grpc.ClientConn) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	out := &wrapperspb.StringValue{}
	if err := conn.Invoke(ctx, echoMethod, wrapperspb.String("hi"), out); err != nil {
		return "", err
	}
	return out.GetValue(), nil
}

// burst waits until each of names answered a call through conn, then
// checks that the next 10 calls per name are spread evenly over them.
func burst(t *testing.T, conn *grpc.ClientConn, names ...string) {
	t.Helper()
	seen := map[string]bool{}
	testutil.Eventually(t, 5*time.Second, func() error {
		server, err := callEcho(t.Context(), conn)
		if err != nil {
			return err
		}
		seen[server] = true
		for _, name := range names {
			if !seen[name] {
				return fmt.Errorf("%s answered no call yet", name)
			}
		}
		return nil
	})
	n := map[string]int{}
	for range 10 * len(names) {
		server, err := callEcho(t.Context(), conn)
		if err != nil {
			t.Fatalf("call: %v", err)
		}
		n[server]++
	}
	for _, name := range names {
		if n[name] != 10 {
			t.Fatalf("%d calls answered %v, want 10 by each of %v", 10*len(names), n, names)
		}
	}
}

// callResult is one call of a caller.
type callResult struct {
	at     time.Time     // when the call returned
	took   time.Duration // how long it took
	server string
	err    error
}

// caller calls through conn back to back until stopped, recording each call.
type caller struct {
	mu      sync.Mutex // guards results
	results []callResult
	cancel  context.CancelFunc
	done    chan struct{}
}

func startCaller(t *testing.T, conn *grpc.ClientConn) *caller {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cl := &caller{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(cl.done)
		for ctx.Err() == nil {
			began := time.Now()
			server, err := callEcho(ctx, conn)
			if ctx.Err() != nil {
				return
			}
			cl.mu.Lock()
			cl.results = append(cl.results, callResult{at: time.Now(), took: time.Since(began), server: server, err: err})
			cl.mu.Unlock()
			// Pace the calls a little so that the record stays small.
			select {
			case <-ctx.Done():
			case <-time.After(time.Millisecond):
			}
		}
	}()
	t.Cleanup(cl.stop)
	return cl
}

func (cl *caller) stop() {
	cl.cancel()
	<-cl.done
}

// since returns the calls that returned at or after from.
func (cl *caller) since(from time.Time) []callResult {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	out := []callResult{}
	for _, r := range cl.results {
		if !r.at.Before(from) {
			out = append(out, r)
		}
	}
	return out
}

// servedBy counts successful calls per server among rs.
func servedBy(rs []callResult) map[string]int {
	n := map[string]int{}
	for _, r := range rs {
		if r.err == nil {
			n[r.server]++
		}
	}
	return n
}

// allServe waits until every one of names answered calls made after from.
func allServe(t *testing.T, cl *caller, from time.Time, names ...string) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, func() error {
		n := servedBy(cl.since(from))
		for _, name := range names {
			if n[name] == 0 {
				return fmt.Errorf("%s answered no call yet (%v)", name, n)
			}
		}
		return nil
	})
}

func TestResolverRoundRobinFailover(t *testing.T) {
	f, addr := startFakeRegistry(t)
	a, b, c3 := startEcho(t, "a"), startEcho(t, "b"), startEcho(t, "c")
	f.put(
		instance(t, "echo", "a", a.addr, passing),
		instance(t, "echo", "b", b.addr, passing),
		instance(t, "echo", "c", c3.addr, passing),
	)
	c := newClient(t, addr, testToken)
	conn := dialEcho(t, c, "outpost:///echo")

	// Round robin: once all three are connected, calls rotate over them.
	burst(t, conn, "a", "b", "c")

	cl := startCaller(t, conn)
	start := time.Now()
	allServe(t, cl, start, "a", "b", "c")

	// Kill b. The registry does not know yet; round robin skips b as soon
	// as its connection breaks. Watch for failoverWindow and as long again:
	// every failed call must fall in the window.
	killed := time.Now()
	b.stop()
	testutil.Eventually(t, 10*time.Second, func() error {
		after := cl.since(killed.Add(failoverWindow))
		if len(after) < 200 || time.Since(killed) < 2*failoverWindow {
			return fmt.Errorf("%d calls after the window so far", len(after))
		}
		return nil
	})
	var lastFail time.Time
	failed := 0
	slowest := time.Duration(0)
	rs := cl.since(killed)
	for _, r := range rs {
		slowest = max(slowest, r.took)
		if r.err != nil {
			failed++
			lastFail = r.at
		}
	}
	failover := time.Duration(0)
	if failed > 0 {
		failover = lastFail.Sub(killed)
	}
	t.Logf("failover: %d of %d calls failed after killing b, the last %s after the kill (window %s); slowest call %s",
		failed, len(rs), failover, failoverWindow, slowest)
	if failover > failoverWindow {
		t.Fatalf("a call failed %s after the kill, want none after %s", failover, failoverWindow)
	}
	if n := servedBy(cl.since(killed.Add(failoverWindow))); n["b"] != 0 || n["a"] == 0 || n["c"] == 0 {
		t.Fatalf("after the window calls were answered by %v, want a and c only", n)
	}

	// The registry drops b and adds d: d gets calls.
	e := startEcho(t, "d")
	f.remove("echo", "b")
	f.put(instance(t, "echo", "d", e.addr, passing))
	added := time.Now()
	allServe(t, cl, added, "a", "c", "d")
	for _, r := range cl.since(added) {
		if r.err != nil {
			t.Fatalf("call failed after the registry update: %v", r.err)
		}
	}
}

func TestResolverDropsCriticalAndFiltersTags(t *testing.T) {
	f, addr := startFakeRegistry(t)
	a, b, c3 := startEcho(t, "a"), startEcho(t, "b"), startEcho(t, "c")
	f.put(
		instance(t, "echo", "a", a.addr, passing, "v1"),
		instance(t, "echo", "b", b.addr, passing, "v2"),
		instance(t, "echo", "c", c3.addr, passing, "v2"),
	)
	c := newClient(t, addr, testToken)

	t.Run("tag", func(t *testing.T) {
		conn := dialEcho(t, c, "outpost:///echo?tag=v2")
		burst(t, conn, "b", "c")
	})

	t.Run("critical", func(t *testing.T) {
		conn := dialEcho(t, c, "outpost:///echo")
		cl := startCaller(t, conn)
		allServe(t, cl, time.Now(), "a", "b", "c")

		// c is still up but the registry says critical: it leaves the list.
		f.put(instance(t, "echo", "c", c3.addr, critical, "v2"))
		var from time.Time
		testutil.Eventually(t, 5*time.Second, func() error {
			// Wait for a first call that a or b answered after one that
			// c answered no more: take the last call by c as the start.
			rs := cl.since(time.Time{})
			for i := len(rs) - 1; i >= 0; i-- {
				if rs[i].server == "c" {
					from = rs[i].at.Add(time.Nanosecond)
					break
				}
			}
			if n := len(cl.since(from)); n < 50 {
				return fmt.Errorf("%d calls since c's last", n)
			}
			return nil
		})
		n := servedBy(cl.since(from))
		if n["a"] == 0 || n["b"] == 0 {
			t.Fatalf("after c turned critical calls were answered by %v, want a and b", n)
		}
		for _, r := range cl.since(from) {
			if r.err != nil {
				t.Fatalf("call failed after c turned critical: %v", r.err)
			}
		}
	})
}

func TestResolverBadTarget(t *testing.T) {
	_, addr := startFakeRegistry(t)
	c := newClient(t, addr, testToken)
	conn := dialEcho(t, c, "outpost:///")
	_, err := callEcho(t.Context(), conn)
	if err == nil {
		t.Fatal("call to outpost:/// succeeded")
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("call to outpost:/// = %v, want Unavailable", err)
	}
}

// Before a first snapshot, a broken watch fails calls fast instead of
// leaving them waiting for addresses.
func TestResolverFailsFastWithoutSnapshot(t *testing.T) {
	_, addr := startFakeRegistry(t)
	c := newClient(t, addr, "wrong-token")
	conn := dialEcho(t, c, "outpost:///echo")
	began := time.Now()
	_, err := callEcho(t.Context(), conn)
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "bearer token") {
		t.Fatalf("call with a refused watch = %v, want the watch's Unauthenticated", err)
	}
	if took := time.Since(began); took > 500*time.Millisecond {
		t.Fatalf("call took %s to fail, want fast", took)
	}
}
