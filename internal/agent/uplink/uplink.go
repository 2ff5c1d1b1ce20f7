package uplink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/protocol"
)

// Queue is where the uplink takes batches from. Next blocks until a batch
// is available and returns the oldest without removing it; Done removes
// the batch Next returned. The uplink calls both from one goroutine.
type Queue interface {
	Next(ctx context.Context) (*outpostv1.TelemetryBatch, error)
	Done(b *outpostv1.TelemetryBatch) error
}

// Config configures an Uplink.
type Config struct {
	// DeviceID is the MQTT client id and names the device's topics.
	DeviceID string
	// URL is the broker: mqtt://host:port or tls://host:port.
	URL string
	// Username defaults to DeviceID; Password may be empty.
	Username, Password string
	// TLS configures tls:// connections; nil uses the system's roots.
	TLS *tls.Config
	// KeepAlive is the MQTT keepalive, whole seconds from 1s. Default 30s.
	KeepAlive time.Duration
	// ConnectTimeout bounds one connection attempt. Default 10s.
	ConnectTimeout time.Duration
	// BackoffMin and BackoffMax bound the reconnect delays. Defaults 1s and 60s.
	BackoffMin, BackoffMax time.Duration
	// QoS of telemetry publishes: 0, 1 or 2. The broker's maximum QoS
	// lowers it if needed.
	QoS byte
	// AgentVersion is announced in the birth message.
	AgentVersion string
	// Logger receives the uplink's logs; nil discards them.
	Logger *slog.Logger
}

// Stats are the Uplink's counters.
type Stats struct {
	// Connected reports whether the connection is up now.
	Connected bool
	// Connects is how many times a connection came up.
	Connects uint64
	// BatchesSent counts publish attempts, retries included.
	BatchesSent uint64
	// BatchesAcked counts batches the broker accepted.
	BatchesAcked uint64
	// PointsAcked counts the points of those batches.
	PointsAcked uint64
	// BatchesRejected counts batches the broker refused with a failure
	// reason code, or that could not be encoded; they are not retried.
	BatchesRejected uint64
	// Retries counts publishes repeated because the previous attempt failed.
	Retries uint64
	// LastPublish is when a batch was last accepted; zero if never.
	LastPublish time.Time
}

// Uplink publishes the device's telemetry and presence over MQTT v5.
type Uplink struct {
	cfg Config
	q   Queue
	log *slog.Logger
	url *url.URL
	bo  *backoff

	// upCh carries a wake-up to the birth goroutine for every connection.
	upCh chan struct{}
	// qos is the QoS telemetry is published at on the current connection.
	qos atomic.Uint32

	connMu sync.Mutex // guards connCtx, connCancel, upWait and failures
	// connCtx is live while a connection is up (from onUp to onDown).
	// paho forgets an unacknowledged publish when a session ends, without
	// telling the publisher, so publishes are bound to it to fail fast.
	connCtx    context.Context
	connCancel context.CancelFunc
	// upWait is closed by the next onUp.
	upWait chan struct{}
	// failures counts failed connection attempts since the last success.
	failures int

	started                            atomic.Bool
	connected                          atomic.Bool
	connects, sent, acked, ackedPoints atomic.Uint64
	rejected, retries                  atomic.Uint64
	lastPublish                        atomic.Int64 // Unix nanoseconds; 0 means never
}

// New checks cfg and returns an Uplink that takes batches from q.
func New(cfg Config, q Queue) (*Uplink, error) {
	var errs []error
	if err := protocol.ValidDeviceID(cfg.DeviceID); err != nil {
		errs = append(errs, fmt.Errorf("device id: %w", err))
	}
	u, err := url.Parse(cfg.URL)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("broker URL %q: %w", cfg.URL, err))
	case u.Scheme != "mqtt" && u.Scheme != "tls":
		errs = append(errs, fmt.Errorf("broker URL %q: scheme must be mqtt or tls", cfg.URL))
	case u.Port() == "":
		errs = append(errs, fmt.Errorf("broker URL %q: no port", cfg.URL))
	}
	if cfg.QoS > 2 {
		errs = append(errs, fmt.Errorf("QoS must be 0, 1 or 2, got %d", cfg.QoS))
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = 30 * time.Second
	}
	if cfg.KeepAlive < time.Second || cfg.KeepAlive > 65535*time.Second {
		errs = append(errs, fmt.Errorf("keepalive must be 1s to 65535s, got %s", cfg.KeepAlive))
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = time.Second
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 60 * time.Second
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		errs = append(errs, fmt.Errorf("backoff max %s is below backoff min %s", cfg.BackoffMax, cfg.BackoffMin))
	}
	if q == nil {
		errs = append(errs, errors.New("no queue"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("creating uplink: %w", err)
	}
	if cfg.Username == "" {
		cfg.Username = cfg.DeviceID
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	up := &Uplink{
		cfg:  cfg,
		q:    q,
		log:  cfg.Logger.With("component", "uplink"),
		url:  u,
		bo:   newBackoff(cfg.BackoffMin, cfg.BackoffMax),
		upCh: make(chan struct{}, 1),
	}
	up.qos.Store(uint32(cfg.QoS))
	up.connCtx, up.connCancel = context.WithCancel(context.Background())
	up.connCancel() // not connected yet
	up.upWait = make(chan struct{})
	return up, nil
}

// Stats returns the counters. It is safe to call at any time.
func (u *Uplink) Stats() Stats {
	s := Stats{
		Connected:       u.connected.Load(),
		Connects:        u.connects.Load(),
		BatchesSent:     u.sent.Load(),
		BatchesAcked:    u.acked.Load(),
		PointsAcked:     u.ackedPoints.Load(),
		BatchesRejected: u.rejected.Load(),
		Retries:         u.retries.Load(),
	}
	if ns := u.lastPublish.Load(); ns != 0 {
		s.LastPublish = time.Unix(0, ns)
	}
	return s
}

// Run connects and publishes until ctx is done. Then it publishes a
// retained offline status (a clean disconnect does not trigger the last
// will), disconnects, and returns nil once every goroutine it started,
// autopaho's included, has exited. It may be called once.
func (u *Uplink) Run(ctx context.Context) error {
	if !u.started.CompareAndSwap(false, true) {
		return errors.New("uplink: Run called twice")
	}
	will, err := u.status(outpostv1.Status_STATE_OFFLINE, time.Time{})
	if err != nil {
		return err
	}
	// The connection outlives ctx a little, for the goodbye below.
	mgrCtx, stopMgr := context.WithCancel(context.WithoutCancel(ctx))
	defer stopMgr()
	cm, err := autopaho.NewConnection(mgrCtx, u.clientConfig(will))
	if err != nil {
		return fmt.Errorf("starting MQTT connection: %w", err)
	}
	u.log.Info("connecting to broker", "url", u.url.Redacted(), "client_id", u.cfg.DeviceID)

	var wg sync.WaitGroup
	wg.Go(func() { u.sendLoop(ctx, cm) })
	wg.Go(func() { u.birthLoop(ctx, cm) })
	<-ctx.Done()
	wg.Wait()

	u.goodbye(cm)
	dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := cm.Disconnect(dctx); err != nil {
		u.log.Warn("disconnecting from broker timed out", "err", err)
	}
	stopMgr()
	<-cm.Done()
	u.connected.Store(false)
	u.connMu.Lock()
	u.connCancel()
	u.connMu.Unlock()
	return nil
}

func (u *Uplink) clientConfig(will []byte) autopaho.ClientConfig {
	return autopaho.ClientConfig{
		ServerUrls:     []*url.URL{u.url},
		TlsCfg:         u.cfg.TLS,
		KeepAlive:      uint16(u.cfg.KeepAlive / time.Second),
		ConnectTimeout: u.cfg.ConnectTimeout,
		// The agent keeps unacknowledged batches in its own queue, so it
		// needs no broker-side session: a fresh session per connection,
		// ended when the connection ends.
		CleanStartOnInitialConnection: true,
		SessionExpiryInterval:         0,
		ReconnectBackoff:              u.bo.delay,
		ConnectUsername:               u.cfg.Username,
		ConnectPassword:               []byte(u.cfg.Password),
		WillMessage:                   &paho.WillMessage{Topic: protocol.StatusTopic(u.cfg.DeviceID), Payload: will, QoS: 1, Retain: true},
		WillProperties:                &paho.WillProperties{ContentType: protocol.ContentTypeProtobuf},
		OnConnectionUp:                u.onUp,
		OnConnectionDown:              u.onDown,
		OnConnectError:                u.onConnectError,
		ClientConfig: paho.ClientConfig{
			ClientID: u.cfg.DeviceID,
			OnClientError: func(err error) {
				u.log.Debug("MQTT client error", "err", err)
			},
			OnServerDisconnect: func(d *paho.Disconnect) {
				u.log.Warn("broker closed the connection", "reason_code", fmt.Sprintf("0x%02x", d.ReasonCode), "reason", reasonString(d))
			},
		},
	}
}

func reasonString(d *paho.Disconnect) string {
	if d.Properties != nil {
		return d.Properties.ReasonString
	}
	return ""
}

// onUp runs in autopaho's goroutine and must not block.
func (u *Uplink) onUp(_ *autopaho.ConnectionManager, ca *paho.Connack) {
	u.bo.up()
	u.connects.Add(1)
	qos := byte(u.cfg.QoS)
	if ca != nil && ca.Properties != nil && ca.Properties.MaximumQoS != nil && *ca.Properties.MaximumQoS < qos {
		qos = *ca.Properties.MaximumQoS
		u.log.Warn("broker supports a lower QoS than configured; publishing at the broker's maximum", "configured", u.cfg.QoS, "used", qos)
	}
	u.qos.Store(uint32(qos))
	u.connMu.Lock()
	u.connCancel()
	u.connCtx, u.connCancel = context.WithCancel(context.Background())
	close(u.upWait)
	u.upWait = make(chan struct{})
	failures := u.failures
	u.failures = 0
	u.connMu.Unlock()
	u.connected.Store(true)
	u.log.Info("connected to broker", "url", u.url.Redacted(), "failed_attempts", failures)
	select {
	case u.upCh <- struct{}{}:
	default:
	}
}

// onDown runs in autopaho's goroutine and must not block.
func (u *Uplink) onDown() bool {
	u.bo.down()
	u.connected.Store(false)
	u.connMu.Lock()
	u.connCancel()
	u.connMu.Unlock()
	u.log.Warn("connection to broker lost; reconnecting")
	return true
}

func (u *Uplink) onConnectError(err error) {
	u.connMu.Lock()
	u.failures++
	first := u.failures == 1
	u.connMu.Unlock()
	var ce *autopaho.ConnackError
	if errors.As(err, &ce) {
		hint := ""
		switch ce.ReasonCode {
		case 0x86, 0x87, 0x85: // bad user name or password, not authorized, client id not valid
			hint = "check device_id and mqtt.password in the config, or join the hub again"
		}
		u.log.Error("broker refused the connection", "reason_code", fmt.Sprintf("0x%02x", ce.ReasonCode), "reason", ce.Reason, "hint", hint)
		return
	}
	// Only the first failure in a row is a warning: an unreachable broker
	// is retried for as long as it takes, and that must not flood the log.
	level := slog.LevelDebug
	if first {
		level = slog.LevelWarn
	}
	u.log.Log(context.Background(), level, "connecting to broker failed; retrying", "url", u.url.Redacted(), "err", err)
}

// awaitConn waits until a connection is up (onUp has run, so cm uses the
// new connection) and returns the context that ends with it.
func (u *Uplink) awaitConn(ctx context.Context, cm *autopaho.ConnectionManager) (context.Context, error) {
	for {
		u.connMu.Lock()
		connCtx, wait := u.connCtx, u.upWait
		u.connMu.Unlock()
		if connCtx.Err() == nil {
			return connCtx, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-cm.Done():
			return nil, errors.New("MQTT connection manager stopped")
		case <-wait:
		}
	}
}

// publish publishes p on the connection connCtx belongs to and gives up as
// soon as that connection goes down.
func (u *Uplink) publish(ctx, connCtx context.Context, cm *autopaho.ConnectionManager, p *paho.Publish) (*paho.PublishResponse, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(connCtx, cancel)
	defer stop()
	pr, err := cm.Publish(ctx, p)
	if err != nil && connCtx.Err() != nil {
		err = fmt.Errorf("connection lost: %w", err)
	}
	return pr, err
}

func (u *Uplink) status(state outpostv1.Status_State, ts time.Time) ([]byte, error) {
	s := &outpostv1.Status{State: state, AgentVersion: u.cfg.AgentVersion}
	if !ts.IsZero() {
		s.TsUnixMs = ts.UnixMilli()
	}
	return protocol.EncodeStatus(s)
}

// retryDelay is the pause before publishing a batch again after a failure
// that did not (yet) show up as a lost connection.
func (u *Uplink) retryDelay() time.Duration { return min(u.cfg.BackoffMin, 5*time.Second) }

func (u *Uplink) sendLoop(ctx context.Context, cm *autopaho.ConnectionManager) {
	for {
		b, err := u.q.Next(ctx)
		if err != nil {
			return // ctx is done
		}
		u.deliver(ctx, cm, b)
		select {
		case <-ctx.Done():
			return
		case <-cm.Done(): // cannot happen before ctx ends; guards against a busy loop
			return
		default:
		}
	}
}

// deliver publishes b until the broker accepts or rejects it, or ctx ends.
func (u *Uplink) deliver(ctx context.Context, cm *autopaho.ConnectionManager, b *outpostv1.TelemetryBatch) {
	log := u.log.With("seq_first", b.GetSeqFirst(), "points", len(b.GetPoints()))
	payload, err := protocol.EncodeTelemetry(b)
	if err != nil {
		u.rejected.Add(1)
		log.Error("dropping a batch that cannot be encoded", "err", err)
		u.done(b)
		return
	}
	for attempt := 0; ; attempt++ {
		connCtx, err := u.awaitConn(ctx, cm)
		if err != nil {
			return
		}
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
			u.rejected.Add(1)
			reason := ""
			if pr.Properties != nil {
				reason = pr.Properties.ReasonString
			}
			log.Warn("broker rejected a telemetry batch; it will not be retried",
				"reason_code", fmt.Sprintf("0x%02x", pr.ReasonCode), "reason", reason)
			u.done(b)
			return
		case err == nil:
			u.acked.Add(1)
			u.ackedPoints.Add(uint64(len(b.GetPoints())))
			u.lastPublish.Store(time.Now().UnixNano())
			u.done(b)
			return
		case ctx.Err() != nil:
			return
		case errors.Is(err, paho.ErrInvalidArguments):
			u.rejected.Add(1)
			log.Error("cannot publish a telemetry batch; it will not be retried", "err", err)
			u.done(b)
			return
		}
		log.Info("publishing a batch failed; retrying", "err", err, "attempt", attempt+1)
		if !sleep(ctx, u.retryDelay()) {
			return
		}
	}
}

func (u *Uplink) done(b *outpostv1.TelemetryBatch) {
	if err := u.q.Done(b); err != nil {
		u.log.Warn("removing a batch from the queue failed", "seq_first", b.GetSeqFirst(), "err", err)
	}
}

// birthLoop publishes the retained online status after every connection.
func (u *Uplink) birthLoop(ctx context.Context, cm *autopaho.ConnectionManager) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-u.upCh:
		}
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

// publishStatus publishes a retained status once a connection is up.
func (u *Uplink) publishStatus(ctx context.Context, cm *autopaho.ConnectionManager, state outpostv1.Status_State) error {
	payload, err := u.status(state, time.Now())
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
	return nil
}

// sleep waits for d or until ctx is done; it reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
