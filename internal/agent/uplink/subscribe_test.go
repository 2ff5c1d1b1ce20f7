package uplink

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/brokertest"
	"github.com/outpost-edge/outpost/internal/testutil"
)

func TestSubscriptionsPublishAndQoS(t *testing.T) {
	b := brokertest.Start(t, "")
	sp := newSpool(t)
	const topic = "$aws/things/pump-7/shadow/get/accepted"
	var mu sync.Mutex
	var got []string
	subscribed := make(chan context.Context, 4)
	cfg := testConfig(b.URL, 1)
	cfg.Subscriptions = []string{topic}
	cfg.OnMessage = func(tp string, payload []byte) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, tp+" "+string(payload))
	}
	cfg.OnSubscribed = func(connCtx context.Context) { subscribed <- connCtx }
	u, err := New(cfg, sp)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Publish(context.Background(), topic, []byte("x")); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Publish before Run = %v, want ErrNotConnected", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()

	for i := range 2 {
		select {
		case <-subscribed:
		case <-time.After(10 * time.Second):
			t.Fatalf("OnSubscribed not called for connection %d", i+1)
		}
		// The broker echoes the publish back to the subscribed client.
		want := fmt.Sprintf("%s hello-%d", topic, i)
		if err := u.Publish(context.Background(), topic, fmt.Appendf(nil, "hello-%d", i)); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 5*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(got) != i+1 || got[i] != want {
				return fmt.Errorf("received %q, want %q last", got, want)
			}
			return nil
		})
		if i == 0 {
			// A new connection subscribes again (clean sessions).
			if err := b.Kick(device); err != nil {
				t.Fatal(err)
			}
		}
	}

	if err := u.SetQoS(3); err == nil {
		t.Error("SetQoS(3) succeeded")
	}
	if err := u.SetQoS(0); err != nil {
		t.Fatal(err)
	}
	add(t, sp, 1, 1)
	testutil.Eventually(t, 5*time.Second, func() error {
		msgs := b.Published(telemetryTopic)
		if len(msgs) == 0 || msgs[len(msgs)-1].QoS != 0 {
			return fmt.Errorf("telemetry messages %d, want the last at QoS 0", len(msgs))
		}
		return nil
	})
}
