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
	"golang.org/x/time/rate"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/protocol"
)

// Spool is where the uplink takes the points it publishes from, and what
// it deletes them from once the broker acknowledged them. The methods are
// called from several goroutines at once (one per lane, plus the status
// loop); *spool.Spool implements it.
type Spool interface {
	// NextSeq is the seq the next stored point gets; every lower seq that
	// still waits is readable.
	NextSeq() uint64
	// ReadBatch returns the oldest waiting points with from ≤ seq < until
	// (until 0: no bound) as a batch of consecutive seqs, or nil if none.
	ReadBatch(from, until uint64, maxPoints, maxBytes int) (*outpostv1.TelemetryBatch, error)
	// Delete removes the points with seqs first..last, inclusive.
	Delete(ctx context.Context, first, last uint64) error
	// Changed is closed at the spool's next commit.
	Changed() <-chan struct{}
	// WireStats is the spool's state as reported to the hub.
	WireStats() *outpostv1.SpoolStats
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
	// lowers it if needed. At 0 a batch is deleted from the spool once it
	// is written to the connection, so the link may lose it.
	QoS byte
	// BatchMaxPoints is the most points per published batch, 1 to
	// protocol.MaxPointsPerBatch. Default 500.
	BatchMaxPoints int
	// DrainRate limits the backlog lane, in points per second; 0 means
	// no limit.
	DrainRate float64
	// StatusInterval is how often the retained online status (with the
	// spool's stats) is refreshed while connected. Default 30s.
	StatusInterval time.Duration
	// Zstd compresses each telemetry payload into a zstd frame.
	Zstd bool
	// StopGrace is how long Run, once its context is done, keeps
	// publishing while connected and points wait. 0 stops at once.
	StopGrace time.Duration
	// AgentVersion is announced in the status messages.
	AgentVersion string
	// Logger receives the uplink's logs; nil discards them.
	Logger *slog.Logger

	// Subscriptions are topic filters subscribed to at QoS 1 on every
	// connection, e.g. the device's shadow response topics. Optional.
	Subscriptions []string
	// OnMessage receives the PUBLISHes that arrive on Subscriptions. It is
	// called from the MQTT client's goroutine and must not block.
	OnMessage func(topic string, payload []byte)
	// OnSubscribed is called after every connection, once Subscriptions
	// are in place, with a context that ends with that connection. It runs
	// in a goroutine of the uplink, one call at a time; the uplink waits
	// for it before it handles the next connection, so it must return
	// promptly.
	OnSubscribed func(connCtx context.Context)
}

// Stats are the Uplink's counters.
type Stats struct {
	// Connected reports whether the connection is up now.
	Connected bool
	// Connects is how many times a connection came up.
	Connects uint64
	// BatchesSent counts publish attempts, retries included.
	BatchesSent uint64
	// BatchesAcked counts batches the broker accepted (at QoS 0: that
	// were written); PointsAcked their points.
	BatchesAcked, PointsAcked uint64
	// BatchesRejected counts batches the broker refused with a failure
	// reason code, or that could not be encoded; they are deleted from the
	// spool, not retried. PointsRejected counts their points.
	BatchesRejected, PointsRejected uint64
	// Retries counts publishes repeated on the same connection because the
	// previous attempt failed.
	Retries uint64
	// PointsBacklog counts the points of PointsAcked that the backlog lane
	// delivered.
	PointsBacklog uint64
	// Draining reports whether the backlog lane is running.
	Draining bool
	// LiveMark is the first seq of the live lane on the current or last
	// connection: points below it were the backlog.
	LiveMark uint64
	// StatusSent counts online status messages published.
	StatusSent uint64
	// LastPublish is when a batch was last accepted; zero if never.
	LastPublish time.Time
}

// maxBatchBytes leaves room under protocol.MaxPayloadBytes for the batch's
// own fields (device and seq_first).
const maxBatchBytes = protocol.MaxPayloadBytes - 128

// Uplink publishes the device's telemetry and presence over MQTT v5.
type Uplink struct {
	cfg Config
	sp  Spool
	log *slog.Logger
	url *url.URL
	bo  *backoff
	// drain paces the backlog lane; nil means no limit.
	drain *rate.Limiter

	// upCh carries a wake-up to the status goroutine for every connection,
	// subCh one to the subscriptions goroutine.
	upCh, subCh chan struct{}
	// qosWanted is the QoS telemetry should use (Config.QoS or SetQoS).
	qosWanted atomic.Uint32
	// qosMax is the broker's maximum QoS on the current connection; 2
	// when it named none.
	qosMax atomic.Uint32
	// cm is the connection manager while Run runs.
	cm atomic.Pointer[autopaho.ConnectionManager]
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

	started, connected, draining       atomic.Bool
	connects, sent, acked, ackedPoints atomic.Uint64
	rejected, rejectedPoints, retries  atomic.Uint64
	backlogPoints, liveMark, statusN   atomic.Uint64
	lastPublish                        atomic.Int64 // Unix nanoseconds; 0 means never
}

// New checks cfg and returns an Uplink that publishes the points of sp.
func New(cfg Config, sp Spool) (*Uplink, error) {
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
	if cfg.BatchMaxPoints == 0 {
		cfg.BatchMaxPoints = 500
	}
	if cfg.BatchMaxPoints < 1 || cfg.BatchMaxPoints > protocol.MaxPointsPerBatch {
		errs = append(errs, fmt.Errorf("batch max points must be 1 to %d, got %d", protocol.MaxPointsPerBatch, cfg.BatchMaxPoints))
	}
	if cfg.DrainRate < 0 {
		errs = append(errs, fmt.Errorf("drain rate must not be negative, got %v", cfg.DrainRate))
	}
	if cfg.StatusInterval <= 0 {
		cfg.StatusInterval = 30 * time.Second
	}
	if sp == nil {
		errs = append(errs, errors.New("no spool"))
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
		cfg:   cfg,
		sp:    sp,
		log:   cfg.Logger.With("component", "uplink"),
		url:   u,
		bo:    newBackoff(cfg.BackoffMin, cfg.BackoffMax),
		upCh:  make(chan struct{}, 1),
		subCh: make(chan struct{}, 1),
	}
	if cfg.DrainRate > 0 {
		// A burst of one batch: a batch is waited for as a whole.
		up.drain = rate.NewLimiter(rate.Limit(cfg.DrainRate), cfg.BatchMaxPoints)
	}
	up.qos.Store(uint32(cfg.QoS))
	up.qosWanted.Store(uint32(cfg.QoS))
	up.qosMax.Store(2)
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
		PointsRejected:  u.rejectedPoints.Load(),
		Retries:         u.retries.Load(),
		PointsBacklog:   u.backlogPoints.Load(),
		Draining:        u.draining.Load(),
		LiveMark:        u.liveMark.Load(),
		StatusSent:      u.statusN.Load(),
	}
	if ns := u.lastPublish.Load(); ns != 0 {
		s.LastPublish = time.Unix(0, ns)
	}
	return s
}

// Run connects and publishes until ctx is done. Then, for up to
// Config.StopGrace while connected, it goes on publishing what waits in
// the spool; then it publishes a retained offline status (a clean
// disconnect does not trigger the last will), disconnects, and returns nil
// once every goroutine it started, autopaho's included, has exited. What
// was not delivered stays in the spool. It may be called once.
func (u *Uplink) Run(ctx context.Context) error {
	if !u.started.CompareAndSwap(false, true) {
		return errors.New("uplink: Run called twice")
	}
	will, err := u.status(outpostv1.Status_STATE_OFFLINE, time.Time{}, false)
	if err != nil {
		return err
	}
	// The connection outlives ctx a little, for the grace and the goodbye.
	mgrCtx, stopMgr := context.WithCancel(context.WithoutCancel(ctx))
	defer stopMgr()
	cm, err := autopaho.NewConnection(mgrCtx, u.clientConfig(will))
	if err != nil {
		return fmt.Errorf("starting MQTT connection: %w", err)
	}
	u.log.Info("connecting to broker", "url", u.url.Redacted(), "client_id", u.cfg.DeviceID)
	u.cm.Store(cm)

	sendCtx, stopSend := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSend()
	var wg sync.WaitGroup
	wg.Go(func() { u.sendLoop(sendCtx, cm) })
	wg.Go(func() { u.statusLoop(ctx, cm) })
	if len(u.cfg.Subscriptions) > 0 {
		wg.Go(func() { u.subscribeLoop(ctx, cm) })
	}
	<-ctx.Done()
	u.grace()
	stopSend()
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

// grace waits, for at most StopGrace, while connected and points wait.
func (u *Uplink) grace() {
	if u.cfg.StopGrace <= 0 {
		return
	}
	u.connMu.Lock()
	connCtx := u.connCtx
	u.connMu.Unlock()
	if connCtx.Err() != nil {
		return
	}
	t := time.NewTimer(u.cfg.StopGrace)
	defer t.Stop()
	for {
		changed := u.sp.Changed()
		if u.sp.WireStats().GetPoints() == 0 {
			return
		}
		select {
		case <-changed:
		case <-connCtx.Done():
			return
		case <-t.C:
			u.log.Info("stopping with points still in the spool; they are sent after the next start", "points", u.sp.WireStats().GetPoints())
			return
		}
	}
}

func (u *Uplink) clientConfig(will []byte) autopaho.ClientConfig {
	return autopaho.ClientConfig{
		ServerUrls:     []*url.URL{u.url},
		TlsCfg:         u.cfg.TLS,
		KeepAlive:      uint16(u.cfg.KeepAlive / time.Second),
		ConnectTimeout: u.cfg.ConnectTimeout,
		// The agent keeps unacknowledged points in its spool, so it
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
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){u.onPublish},
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
	wanted := byte(u.qosWanted.Load())
	qos := wanted
	u.qosMax.Store(2)
	if ca != nil && ca.Properties != nil && ca.Properties.MaximumQoS != nil {
		u.qosMax.Store(uint32(*ca.Properties.MaximumQoS))
		if *ca.Properties.MaximumQoS < qos {
			qos = *ca.Properties.MaximumQoS
			u.log.Warn("broker supports a lower QoS than configured; publishing at the broker's maximum", "configured", wanted, "used", qos)
		}
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
	select {
	case u.subCh <- struct{}{}:
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

// retryDelay is the pause before publishing a batch again after a failure
// that did not (yet) show up as a lost connection.
func (u *Uplink) retryDelay() time.Duration { return min(u.cfg.BackoffMin, 5*time.Second) }

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
