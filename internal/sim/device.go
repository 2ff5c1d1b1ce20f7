package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/internal/agent/collect"
	"github.com/outpost-edge/outpost/protocol"
)

const (
	// publishTimeout bounds one publish, acknowledgement included.
	publishTimeout = 10 * time.Second
	// dialTimeout bounds one connection attempt, CONNACK included.
	dialTimeout = 30 * time.Second
	// simVersion is the agent version simulated devices report.
	simVersion = "outpost-sim"
	// syncToken is the clientToken of reports that answer no probe.
	syncToken = "sim-sync"
)

// device is one simulated device with its own MQTT connection.
type device struct {
	f        *fleet
	id       string
	user     string
	password string
	url      *url.URL
	// source is the local address of the device's connections; the zero
	// Addr lets the system choose.
	source  netip.Addr
	sensors []sensor

	// cm is set by start, and by onUp, which may run before start has
	// stored it.
	cm        atomic.Pointer[autopaho.ConnectionManager]
	cancel    context.CancelFunc
	connected atomic.Bool
	connects  atomic.Int32
	ready     chan struct{}
	readyOnce sync.Once

	// seq is the seq of the last point published; it starts at the
	// run's start time in microseconds, so that a later run of the same
	// fleet continues above the seqs an earlier one stored.
	seq uint64

	mu      sync.Mutex
	waiters map[string]chan struct{} // clientToken of a probe → closed when accepted
	jobs    map[string]bool          // jobs this device has taken up (running or ended)
}

type sensor struct {
	name string
	sim  *collect.Sim
}

func newDevice(f *fleet, index int, id, user, password, rawURL string) (*device, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("broker URL %q from the hub is not a URL", rawURL)
	}
	if user == "" {
		user = id
	}
	d := &device{
		f: f, id: id, user: user, password: password, url: u,
		ready:   make(chan struct{}),
		waiters: make(map[string]chan struct{}),
		jobs:    make(map[string]bool),
		seq:     uint64(time.Now().UnixMicro()) + uint64(index), // distinct per device, above earlier runs
	}
	if n := len(f.o.SourceIPs); n > 0 {
		d.source = f.o.SourceIPs[index%n]
	}
	for _, kind := range []string{collect.SimTemperature, collect.SimHumidity, collect.SimVibration} {
		s, err := collect.NewSim(kind, collect.SimSeed(id, kind))
		if err != nil {
			return nil, err
		}
		d.sensors = append(d.sensors, sensor{name: kind, sim: s})
	}
	return d, nil
}

// start begins connecting; the connection lives until stop or until ctx
// ends.
func (d *device) start(ctx context.Context) error {
	ctx, d.cancel = context.WithCancel(ctx)
	will, err := protocol.EncodeStatus(&outpostv1.Status{State: outpostv1.Status_STATE_OFFLINE, AgentVersion: simVersion})
	if err != nil {
		return err
	}
	cfg := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{d.url},
		KeepAlive:                     60,
		ConnectTimeout:                dialTimeout,
		CleanStartOnInitialConnection: true,
		ReconnectBackoff:              reconnectBackoff,
		ConnectUsername:               d.user,
		ConnectPassword:               []byte(d.password),
		WillMessage:                   &paho.WillMessage{Topic: protocol.StatusTopic(d.id), Payload: will, QoS: 1, Retain: true},
		WillProperties:                &paho.WillProperties{ContentType: protocol.ContentTypeProtobuf},
		OnConnectionUp:                d.onUp,
		OnConnectionDown:              func() bool { d.connected.Store(false); return true },
		OnConnectError: func(err error) {
			d.f.o.Logger.Debug("connecting failed", "device", d.id, "err", err)
		},
		ClientConfig: paho.ClientConfig{
			ClientID:          d.id,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){d.onPublish},
			OnClientError:     func(err error) { d.f.o.Logger.Debug("MQTT client error", "device", d.id, "err", err) },
		},
	}
	if d.source.IsValid() {
		cfg.AttemptConnection = dialFrom(d.source, cfg.TlsCfg)
	}
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		d.cancel()
		return err
	}
	d.cm.Store(cm)
	if d.f.o.Rate > 0 {
		d.f.wg.Go(func() { d.telemetry(d.f.telemetryCtx) })
	}
	return nil
}

// reconnectBackoff waits a random time up to 250ms·2^attempt (at most
// 30s), so that a fleet that lost its hub does not come back in one wave.
func reconnectBackoff(attempt int) time.Duration {
	ceiling := 250 * time.Millisecond << min(attempt, 7)
	return time.Duration(rand.Int64N(int64(min(ceiling, 30*time.Second)) + 1))
}

// stop disconnects the device and waits for its connection to end.
func (d *device) stop() {
	cm := d.cm.Load()
	if cm == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = cm.Disconnect(ctx)
	d.cancel()
	<-cm.Done()
}

// onUp runs in autopaho's goroutine and must not block.
func (d *device) onUp(cm *autopaho.ConnectionManager, _ *paho.Connack) {
	d.cm.Store(cm)
	d.connected.Store(true)
	d.connects.Add(1)
	go d.setUp(cm)
}

// setUp subscribes to the shadow responses, publishes the birth status and
// asks for the shadow, as an agent does after every connection.
func (d *device) setUp(cm *autopaho.ConnectionManager) {
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	subs := []paho.SubscribeOptions{
		{Topic: protocol.ShadowTopic(d.id, "", protocol.ShadowOpUpdate, protocol.ShadowDelta), QoS: 1},
		{Topic: protocol.ShadowTopic(d.id, "", protocol.ShadowOpUpdate, protocol.ShadowAccepted), QoS: 1},
		{Topic: protocol.ShadowTopic(d.id, "", protocol.ShadowOpGet, protocol.ShadowAccepted), QoS: 1},
		{Topic: protocol.JobsNotifyNextTopic(d.id), QoS: 1},
		{Topic: protocol.JobsTopic(d.id, protocol.JobsNext, protocol.JobsOpGet, protocol.JobsAccepted), QoS: 1},
	}
	sa, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: subs})
	if err != nil {
		d.f.o.Logger.Debug("subscribing failed", "device", d.id, "err", err)
		return // the next connection tries again
	}
	for _, rc := range sa.Reasons {
		if rc >= 0x80 {
			d.f.o.Logger.Warn("broker refused a shadow subscription", "device", d.id, "reason_code", fmt.Sprintf("0x%02x", rc))
			return
		}
	}
	status, err := protocol.EncodeStatus(&outpostv1.Status{State: outpostv1.Status_STATE_ONLINE, TsUnixMs: time.Now().UnixMilli(), AgentVersion: simVersion})
	if err == nil {
		_, err = cm.Publish(ctx, &paho.Publish{Topic: protocol.StatusTopic(d.id), QoS: 1, Retain: true, Payload: status,
			Properties: &paho.PublishProperties{ContentType: protocol.ContentTypeProtobuf}})
	}
	if err != nil {
		d.f.o.Logger.Debug("publishing status failed", "device", d.id, "err", err)
	}
	get, _ := json.Marshal(map[string]string{"clientToken": syncToken})
	if _, err := cm.Publish(ctx, &paho.Publish{Topic: protocol.ShadowTopic(d.id, "", protocol.ShadowOpGet, ""), QoS: 1, Payload: get}); err != nil {
		d.f.o.Logger.Debug("asking for the shadow failed", "device", d.id, "err", err)
	}
	if _, err := cm.Publish(ctx, &paho.Publish{Topic: protocol.JobsTopic(d.id, protocol.JobsNext, protocol.JobsOpGet, ""), QoS: 1, Payload: get}); err != nil {
		d.f.o.Logger.Debug("asking for the next job failed", "device", d.id, "err", err)
	}
	d.readyOnce.Do(func() { close(d.ready) })
}

// onPublish handles the shadow responses: a delta (or the delta of the
// full shadow after a connect) is reported back as applied, and an
// accepted report ends the probe that caused it.
func (d *device) onPublish(pr paho.PublishReceived) (bool, error) {
	if pr.Packet == nil {
		return false, nil
	}
	if jp, err := protocol.ParseJobsTopic(pr.Packet.Topic); err == nil {
		if jp.Op == protocol.JobsOpNotifyNext || (jp.Op == protocol.JobsOpGet && jp.Suffix == protocol.JobsAccepted) {
			var m protocol.JobsExecutionResponse // notify-next has the same execution field
			if json.Unmarshal(pr.Packet.Payload, &m) == nil && m.Execution != nil {
				d.takeJob(*m.Execution)
			}
		}
		return true, nil
	}
	p, err := protocol.ParseShadowTopic(pr.Packet.Topic)
	if err != nil || p.Name != "" {
		return false, nil
	}
	switch {
	case p.Op == protocol.ShadowOpUpdate && p.Suffix == protocol.ShadowDelta:
		var doc struct {
			State map[string]any `json:"state"`
		}
		if json.Unmarshal(pr.Packet.Payload, &doc) == nil && len(doc.State) > 0 {
			go d.report(doc.State)
		}
	case p.Op == protocol.ShadowOpGet && p.Suffix == protocol.ShadowAccepted:
		var doc struct {
			State struct {
				Delta map[string]any `json:"delta"`
			} `json:"state"`
		}
		if json.Unmarshal(pr.Packet.Payload, &doc) == nil && len(doc.State.Delta) > 0 {
			go d.report(doc.State.Delta)
		}
	case p.Op == protocol.ShadowOpUpdate && p.Suffix == protocol.ShadowAccepted:
		var doc struct {
			ClientToken string `json:"clientToken"`
		}
		if json.Unmarshal(pr.Packet.Payload, &doc) == nil && doc.ClientToken != "" {
			d.resolve(doc.ClientToken)
		}
	}
	return true, nil
}

// report publishes state as the reported state, with the probe token it
// carries (if any) as clientToken.
func (d *device) report(state map[string]any) {
	token := syncToken
	if s, ok := state["sim"].(map[string]any); ok {
		if p, ok := s["probe"].(string); ok && p != "" {
			token = p
		}
	}
	payload, err := json.Marshal(map[string]any{"state": map[string]any{"reported": state}, "clientToken": token})
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	if _, err := d.cm.Load().Publish(ctx, &paho.Publish{Topic: protocol.ShadowTopic(d.id, "", protocol.ShadowOpUpdate, ""), QoS: 1, Payload: payload}); err != nil {
		d.f.o.Logger.Debug("reporting the shadow failed", "device", d.id, "err", err)
	}
}

// expect registers a probe token and returns the channel closed when the
// device's report carrying it has been accepted.
func (d *device) expect(token string) chan struct{} {
	ch := make(chan struct{})
	d.mu.Lock()
	d.waiters[token] = ch
	d.mu.Unlock()
	return ch
}

func (d *device) forget(token string) {
	d.mu.Lock()
	delete(d.waiters, token)
	d.mu.Unlock()
}

func (d *device) resolve(token string) {
	d.mu.Lock()
	ch, ok := d.waiters[token]
	delete(d.waiters, token)
	d.mu.Unlock()
	if ok {
		close(ch)
	}
}

// telemetry publishes Rate points per second, every PublishEvery, until
// ctx ends.
func (d *device) telemetry(ctx context.Context) {
	every := d.f.o.PublishEvery
	// Spread the fleet's publishes over the interval.
	select {
	case <-ctx.Done():
		return
	case <-time.After(time.Duration(rand.Int64N(int64(every)))):
	}
	t := time.NewTicker(every)
	defer t.Stop()
	last, carry := time.Now(), 0.0
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			// Points accrue with elapsed time, so a slow publish delays
			// points but does not lower the rate.
			carry += d.f.o.Rate * now.Sub(last).Seconds()
			last = now
			n := min(int(carry), protocol.MaxPointsPerBatch)
			if n == 0 {
				continue
			}
			carry -= float64(n)
			d.publishPoints(ctx, now, n)
		}
	}
}

func (d *device) publishPoints(ctx context.Context, now time.Time, n int) {
	// A batch is counted whole or not at all, even when the measured
	// window opens or closes while it is in flight.
	counted := d.f.counting.Load()
	count := func(c *atomic.Uint64) {
		if counted {
			c.Add(uint64(n))
		}
	}
	if !d.connected.Load() {
		count(&d.f.failed)
		return
	}
	b := &outpostv1.TelemetryBatch{Device: d.id, SeqFirst: d.seq + 1, Points: make([]*outpostv1.Point, n)}
	span := d.f.o.PublishEvery
	for i := range n {
		ts := now.Add(-span + span*time.Duration(i+1)/time.Duration(n))
		s := d.sensors[i%len(d.sensors)]
		b.Points[i] = &outpostv1.Point{Sensor: s.name, TsUnixMs: ts.UnixMilli(), Value: &outpostv1.Point_Num{Num: s.sim.Value(ts)}}
	}
	d.seq += uint64(n)
	payload, err := protocol.EncodeTelemetry(b)
	if err != nil {
		count(&d.f.failed)
		return
	}
	count(&d.f.sent)
	// A batch in flight completes even when publishing stops.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
	defer cancel()
	start := time.Now()
	pr, err := d.cm.Load().Publish(pctx, &paho.Publish{
		Topic: protocol.TelemetryTopic(d.id), QoS: d.f.o.QoS, Payload: payload,
		Properties: &paho.PublishProperties{ContentType: protocol.ContentTypeProtobuf},
	})
	if err != nil || (pr != nil && pr.ReasonCode >= 0x80) {
		count(&d.f.failed)
		return
	}
	// At QoS 0 Publish returns once the packet is written: there is no
	// acknowledgement to time.
	if counted && d.f.o.QoS > 0 {
		d.f.publish.Record(time.Since(start))
	}
	count(&d.f.acked)
}

// takeJob runs a pending execution once: IN_PROGRESS, JobDuration later
// SUCCEEDED or, for a device chosen to fail, FAILED.
func (d *device) takeJob(e protocol.JobExecution) {
	if e.Status != protocol.JobQueued && e.Status != protocol.JobInProgress {
		return
	}
	d.mu.Lock()
	taken := d.jobs[e.JobID]
	d.jobs[e.JobID] = true
	d.mu.Unlock()
	if taken {
		return
	}
	go func() {
		d.updateJob(e.JobID, protocol.JobInProgress, map[string]string{"stage": "downloading", "progress": "0"})
		time.Sleep(d.f.o.JobDuration)
		fail := d.f.o.FailJob(d.id, e.JobID)
		status, details, counter := protocol.JobSucceeded, map[string]string{"stage": "committed"}, &d.f.jobsOK
		if fail {
			status, details, counter = protocol.JobFailed, map[string]string{"stage": "installing", "reason": "simulated_failure"}, &d.f.jobsFailed
		}
		if d.updateJob(e.JobID, status, details) {
			counter.Add(1)
			return
		}
		// Not delivered: the next notify-next (after a reconnect) offers
		// the job again.
		d.mu.Lock()
		delete(d.jobs, e.JobID)
		d.mu.Unlock()
	}()
}

// updateJob publishes a job update; it reports whether the broker took it.
func (d *device) updateJob(jobID string, status protocol.JobStatus, details map[string]string) bool {
	payload, err := json.Marshal(protocol.JobsUpdateRequest{Status: status, StatusDetails: details})
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	if _, err := d.cm.Load().Publish(ctx, &paho.Publish{Topic: protocol.JobsTopic(d.id, jobID, protocol.JobsOpUpdate, ""), QoS: 1, Payload: payload}); err != nil {
		d.f.o.Logger.Debug("updating a job failed", "device", d.id, "job", jobID, "err", err)
		return false
	}
	return true
}
