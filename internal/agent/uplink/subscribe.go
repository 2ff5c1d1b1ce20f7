package uplink

import (
	"context"
	"errors"
	"fmt"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
)

// SetQoS changes the QoS of telemetry publishes from the next batch on; the
// broker's maximum QoS still lowers it. It is safe to call at any time.
func (u *Uplink) SetQoS(qos byte) error {
	if qos > 2 {
		return fmt.Errorf("setting telemetry QoS: must be 0, 1 or 2, got %d", qos)
	}
	u.qosWanted.Store(uint32(qos))
	u.qos.Store(uint32(min(qos, byte(u.qosMax.Load()))))
	return nil
}

// Publish publishes payload on topic at QoS 1, not retained, on the
// current connection, and returns once the broker has acknowledged it. It
// fails at once when not connected: the caller decides whether to try
// again after the next connection (see Config.OnSubscribed).
func (u *Uplink) Publish(ctx context.Context, topic string, payload []byte) error {
	u.connMu.Lock()
	connCtx := u.connCtx
	u.connMu.Unlock()
	cm := u.cm.Load()
	if connCtx.Err() != nil || cm == nil {
		return fmt.Errorf("publishing on %s: %w", topic, ErrNotConnected)
	}
	pr, err := u.publish(ctx, connCtx, cm, &paho.Publish{
		Topic:      topic,
		QoS:        1,
		Payload:    payload,
		Properties: &paho.PublishProperties{ContentType: "application/json"},
	})
	if err != nil {
		return fmt.Errorf("publishing on %s: %w", topic, err)
	}
	if pr != nil && pr.ReasonCode >= 0x80 {
		return fmt.Errorf("publishing on %s: broker refused it with reason code 0x%02x", topic, pr.ReasonCode)
	}
	return nil
}

// onPublish hands PUBLISHes on the extra subscriptions to OnMessage.
func (u *Uplink) onPublish(pr paho.PublishReceived) (bool, error) {
	if u.cfg.OnMessage == nil || pr.Packet == nil {
		return false, nil
	}
	u.cfg.OnMessage(pr.Packet.Topic, pr.Packet.Payload)
	return true, nil
}

// subscribeLoop subscribes to Config.Subscriptions after every connection
// and then calls OnSubscribed.
func (u *Uplink) subscribeLoop(ctx context.Context, cm *autopaho.ConnectionManager) {
	subs := make([]paho.SubscribeOptions, 0, len(u.cfg.Subscriptions))
	for _, f := range u.cfg.Subscriptions {
		subs = append(subs, paho.SubscribeOptions{Topic: f, QoS: 1})
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-u.subCh:
		}
		connCtx, err := u.awaitConn(ctx, cm)
		if err != nil {
			return
		}
		for {
			err := u.subscribe(ctx, connCtx, cm, subs)
			if err == nil {
				break
			}
			if ctx.Err() != nil || connCtx.Err() != nil {
				break // stopping, or the next connection will try again
			}
			u.log.Warn("subscribing failed; retrying", "err", err)
			if !sleep(ctx, u.retryDelay()) {
				return
			}
		}
		if connCtx.Err() == nil && ctx.Err() == nil && u.cfg.OnSubscribed != nil {
			u.cfg.OnSubscribed(connCtx)
		}
	}
}

func (u *Uplink) subscribe(ctx, connCtx context.Context, cm *autopaho.ConnectionManager, subs []paho.SubscribeOptions) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(connCtx, cancel)
	defer stop()
	sa, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: subs})
	if err != nil {
		return fmt.Errorf("subscribing: %w", err)
	}
	var errs []error
	for i, rc := range sa.Reasons {
		if rc >= 0x80 && i < len(subs) {
			errs = append(errs, fmt.Errorf("subscribing to %s: refused with reason code 0x%02x", subs[i].Topic, rc))
		}
	}
	return errors.Join(errs...)
}
