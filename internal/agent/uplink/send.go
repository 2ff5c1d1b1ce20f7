package uplink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"golang.org/x/time/rate"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/protocol"
)

// deleteTimeout bounds the wait for a delivered batch's deletion.
const deleteTimeout = 10 * time.Second

// sendLoop runs one session per connection until ctx is done.
func (u *Uplink) sendLoop(ctx context.Context, cm *autopaho.ConnectionManager) {
	for {
		connCtx, err := u.awaitConn(ctx, cm)
		if err != nil {
			return // ctx is done or the manager stopped
		}
		u.session(ctx, cm, connCtx)
		if ctx.Err() != nil {
			return
		}
	}
}

// session publishes over one connection until it drops or ctx is done. The
// points that waited before it came up are the backlog: they drain in their
// own lane at Config.DrainRate while the live lane publishes newer points
// as they are stored. Each lane keeps seq order; the hub stores by (device,
// seq), so the two interleaving is harmless. Whatever is unacknowledged when
// the connection drops is still in the spool and becomes the next session's
// backlog.
func (u *Uplink) session(ctx context.Context, cm *autopaho.ConnectionManager, connCtx context.Context) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(connCtx, cancel)()

	mark := u.sp.NextSeq()
	u.liveMark.Store(mark)
	backlog := u.sp.WireStats().GetPoints()
	var wg sync.WaitGroup
	if backlog > 0 {
		u.draining.Store(true)
		u.log.Info("draining the backlog", "points", backlog, "below_seq", mark, "rate", u.cfg.DrainRate)
		wg.Go(func() {
			defer u.draining.Store(false)
			began := time.Now()
			if u.lane(sctx, connCtx, cm, "backlog", 0, mark, u.drain) {
				u.log.Info("backlog drained", "took", time.Since(began).Round(time.Millisecond))
			}
		})
	}
	wg.Go(func() { u.lane(sctx, connCtx, cm, "live", mark, 0, nil) })
	wg.Wait()
}

// lane publishes the waiting points with from ≤ seq < until (until 0: no
// bound, wait for new points) in seq order, one batch at a time, deleting
// each batch once the broker acknowledged or refused it. It returns true
// when a bounded lane is done, false when ctx ended first.
func (u *Uplink) lane(ctx, connCtx context.Context, cm *autopaho.ConnectionManager, name string, from, until uint64, lim *rate.Limiter) bool {
	log := u.log.With("lane", name)
	cursor := from
	for ctx.Err() == nil {
		changed := u.sp.Changed()
		next := u.sp.NextSeq()
		b, err := u.sp.ReadBatch(cursor, until, u.cfg.BatchMaxPoints, maxBatchBytes)
		if err != nil {
			log.Error("reading the spool failed; retrying", "err", err)
			if !sleep(ctx, u.retryDelay()) {
				return false
			}
			continue
		}
		if b == nil {
			if until != 0 {
				return true
			}
			// Nothing from cursor on: the next point is stored at next or later.
			cursor = max(cursor, next)
			select {
			case <-changed:
			case <-ctx.Done():
			}
			continue
		}
		if lim != nil {
			if err := lim.WaitN(ctx, len(b.GetPoints())); err != nil {
				return false
			}
		}
		if !u.deliver(ctx, connCtx, cm, b, log) {
			return false
		}
		last := b.GetSeqFirst() + uint64(len(b.GetPoints())) - 1
		if name == "backlog" {
			u.backlogPoints.Add(uint64(len(b.GetPoints())))
		}
		// From cursor, not SeqFirst: a damaged record ReadBatch skipped
		// goes too.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deleteTimeout)
		if err := u.sp.Delete(dctx, cursor, last); err != nil {
			log.Warn("deleting a delivered batch from the spool failed; it may be sent again", "seq_first", b.GetSeqFirst(), "err", err)
		}
		cancel()
		cursor = last + 1
	}
	return false
}

// deliver publishes b until the broker accepts or refuses it, which it
// reports with true, or until the connection or ctx ends (false): then b
// stays in the spool for the next session.
func (u *Uplink) deliver(ctx, connCtx context.Context, cm *autopaho.ConnectionManager, b *outpostv1.TelemetryBatch, log *slog.Logger) bool {
	log = log.With("seq_first", b.GetSeqFirst(), "points", len(b.GetPoints()))
	payload, err := protocol.EncodeTelemetry(b)
	if err != nil {
		u.reject(b)
		log.Error("dropping a batch that cannot be encoded", "err", err)
		return true
	}
	if u.cfg.Zstd {
		payload = protocol.CompressZstd(payload)
	}
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			u.retries.Add(1)
		}
		u.sent.Add(1)
		pr, err := u.publish(ctx, connCtx, cm, &paho.Publish{
			QoS:        byte(u.qos.Load()),
			Topic:      protocol.TelemetryTopic(u.cfg.DeviceID),
			Payload:    payload,
			Properties: &paho.PublishProperties{ContentType: protocol.ContentTypeProtobuf},
		})
		switch {
		case pr != nil && pr.ReasonCode >= 0x80:
			u.reject(b)
			reason := ""
			if pr.Properties != nil {
				reason = pr.Properties.ReasonString
			}
			log.Warn("broker refused a telemetry batch; it is deleted, not retried",
				"reason_code", fmt.Sprintf("0x%02x", pr.ReasonCode), "reason", reason)
			return true
		case err == nil:
			u.acked.Add(1)
			u.ackedPoints.Add(uint64(len(b.GetPoints())))
			u.lastPublish.Store(time.Now().UnixNano())
			return true
		case ctx.Err() != nil || connCtx.Err() != nil:
			return false
		case errors.Is(err, paho.ErrInvalidArguments):
			u.reject(b)
			log.Error("cannot publish a telemetry batch; it is deleted, not retried", "err", err)
			return true
		}
		log.Info("publishing a batch failed; retrying", "err", err, "attempt", attempt+1)
		if !sleep(ctx, u.retryDelay()) {
			return false
		}
	}
}

func (u *Uplink) reject(b *outpostv1.TelemetryBatch) {
	u.rejected.Add(1)
	u.rejectedPoints.Add(uint64(len(b.GetPoints())))
}
