package uplink

import (
	"context"
	"fmt"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/protocol"
)

// status encodes a status message; withSpool adds the spool's stats (not
// to the will, which is fixed when connecting).
func (u *Uplink) status(state outpostv1.Status_State, ts time.Time, withSpool bool) ([]byte, error) {
	s := &outpostv1.Status{State: state, AgentVersion: u.cfg.AgentVersion}
	if !ts.IsZero() {
		s.TsUnixMs = ts.UnixMilli()
	}
	if withSpool {
		s.Spool = u.sp.WireStats()
	}
	return protocol.EncodeStatus(s)
}

// statusLoop publishes the retained online status after every connection
// and every StatusInterval while connected.
func (u *Uplink) statusLoop(ctx context.Context, cm *autopaho.ConnectionManager) {
	tick := time.NewTicker(u.cfg.StatusInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if !u.connected.Load() {
				continue
			}
			if err := u.publishStatus(ctx, cm, outpostv1.Status_STATE_ONLINE); err != nil && ctx.Err() == nil {
				u.log.Debug("refreshing the status failed", "err", err)
			}
		case <-u.upCh:
			for {
				err := u.publishStatus(ctx, cm, outpostv1.Status_STATE_ONLINE)
				if err == nil || ctx.Err() != nil || !u.connected.Load() {
					break // done, stopping, or the next connection will try again
				}
				u.log.Warn("publishing the birth message failed; retrying", "err", err)
				if !sleep(ctx, u.retryDelay()) {
					return
				}
			}
			tick.Reset(u.cfg.StatusInterval)
		}
	}
}

// goodbye publishes the retained offline status before a clean disconnect.
func (u *Uplink) goodbye(cm *autopaho.ConnectionManager) {
	if !u.connected.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := u.publishStatus(ctx, cm, outpostv1.Status_STATE_OFFLINE); err != nil {
		u.log.Debug("publishing the offline status failed", "err", err)
	}
}

// publishStatus publishes a retained status, with the spool's stats, once
// a connection is up.
func (u *Uplink) publishStatus(ctx context.Context, cm *autopaho.ConnectionManager, state outpostv1.Status_State) error {
	payload, err := u.status(state, time.Now(), true)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, u.cfg.ConnectTimeout)
	defer cancel()
	connCtx, err := u.awaitConn(ctx, cm)
	if err != nil {
		return fmt.Errorf("publishing %s status: %w", state, err)
	}
	_, err = u.publish(ctx, connCtx, cm, &paho.Publish{
		QoS:        1,
		Retain:     true,
		Topic:      protocol.StatusTopic(u.cfg.DeviceID),
		Payload:    payload,
		Properties: &paho.PublishProperties{ContentType: protocol.ContentTypeProtobuf},
	})
	if err != nil {
		return fmt.Errorf("publishing %s status: %w", state, err)
	}
	if state == outpostv1.Status_STATE_ONLINE {
		u.statusN.Add(1)
	}
	return nil
}
