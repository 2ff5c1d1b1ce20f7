package broker

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/internal/hub/ingest"
	"github.com/outpost-edge/outpost/internal/hub/store"
	"github.com/outpost-edge/outpost/protocol"
	"github.com/prometheus/client_golang/prometheus"
)

// Authenticator checks device credentials.
type Authenticator interface {
	Authenticate(ctx context.Context, deviceID, password string) bool
}

// PresenceRecorder records connects, disconnects and agents' status reports.
type PresenceRecorder interface {
	SetPresence(ctx context.Context, deviceID string, online bool, agentVersion string)
	RecordStatus(ctx context.Context, deviceID string, online bool, agentVersion string, spool *store.SpoolStats)
}

// Ingester stores telemetry durably before returning.
type Ingester interface {
	Handle(ctx context.Context, deviceID string, payload []byte, contentType string) (ingest.Result, error)
}

// Options configure the broker.
type Options struct {
	// Addr is the TCP listen address for MQTT, e.g. ":1883" or "127.0.0.1:0".
	Addr     string
	Auth     Authenticator
	Presence PresenceRecorder
	Ingest   Ingester
	Logger   *slog.Logger
	Registry prometheus.Registerer
}

// Broker is the embedded MQTT broker. Create it with New (which binds the
// listener) and serve with Run.
type Broker struct {
	srv    *mqtt.Server
	tcp    *tcpListener
	logger *slog.Logger
	// ctx is cancelled when Run returns; hooks use it for store calls.
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once

	authFailures prometheus.Counter
	aclDenied    prometheus.Counter
	acceptErrors prometheus.Counter
}

// maxPacketSize lets payloads somewhat over protocol.MaxPayloadBytes reach
// ingest, where they are counted and rejected with a reason; anything larger
// still is refused by the broker itself.
const maxPacketSize = 4 * protocol.MaxPayloadBytes

// New creates the broker and binds its listener, so that a port conflict is
// reported before anything else starts.
func New(opts Options) (*Broker, error) {
	logger := opts.Logger.With("component", "broker")
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = maxPacketSize
	caps.MaximumClientWritesPending = 1024
	srv := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		InlineClient: true,
		Logger:       slog.New(slog.DiscardHandler), // mochi logs every connection; our hooks log what matters
	})
	ctx, cancel := context.WithCancel(context.Background())
	b := &Broker{
		srv: srv, logger: logger, ctx: ctx, cancel: cancel,
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_mqtt_auth_failures_total", Help: "MQTT connections refused for bad credentials."}),
		aclDenied:    prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_mqtt_acl_denied_total", Help: "MQTT publishes and subscriptions refused by topic ACL."}),
		acceptErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_mqtt_accept_errors_total", Help: "Failed accepts of MQTT connections (e.g. out of file descriptors); the broker retries."}),
	}
	if opts.Registry != nil {
		opts.Registry.MustRegister(b.authFailures, b.aclDenied, b.acceptErrors, prometheus.NewGaugeFunc(
			prometheus.GaugeOpts{Name: "outpost_mqtt_clients_connected", Help: "Connected MQTT clients."},
			func() float64 { return float64(srv.Info.ClientsConnected) }))
	}
	h := &hook{b: b, opts: opts}
	if err := srv.AddHook(h, nil); err != nil {
		cancel()
		return nil, fmt.Errorf("adding broker hook: %w", err)
	}
	b.tcp = newTCPListener("tcp", opts.Addr, logger, b.acceptErrors)
	if err := srv.AddListener(b.tcp); err != nil {
		cancel()
		return nil, fmt.Errorf("listening for MQTT on %s: %w", opts.Addr, err)
	}
	return b, nil
}

// Addr is the bound listen address (useful with port 0).
func (b *Broker) Addr() string { return b.tcp.Address() }

// Run serves MQTT until ctx ends, then disconnects every client and returns.
func (b *Broker) Run(ctx context.Context) error {
	if err := b.srv.Serve(); err != nil {
		b.Close()
		return fmt.Errorf("serving MQTT: %w", err)
	}
	b.logger.Info("MQTT broker listening", "addr", b.Addr())
	<-ctx.Done()
	b.Close()
	return nil
}

// Close stops the broker; it is safe to call more than once.
func (b *Broker) Close() {
	b.once.Do(func() {
		b.cancel()
		_ = b.srv.Close()
	})
}

// DisconnectDevice drops the live connection of a device, if any.
func (b *Broker) DisconnectDevice(id string) {
	if cl, ok := b.srv.Clients.Get(id); ok && !cl.Net.Inline && !cl.Closed() {
		_ = b.srv.DisconnectClient(cl, packets.ErrNotAuthorized)
	}
}

// Publish sends a message from the hub itself (no ACL applies).
func (b *Broker) Publish(topic string, payload []byte, retain bool, qos byte) error {
	return b.srv.Publish(topic, payload, retain, qos)
}

// Subscribe delivers messages matching filter to fn from inside the hub.
func (b *Broker) Subscribe(filter string, id int, fn func(topic string, payload []byte)) error {
	return b.srv.Subscribe(filter, id, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		fn(pk.TopicName, pk.Payload)
	})
}

type hook struct {
	mqtt.HookBase
	b    *Broker
	opts Options
}

func (h *hook) ID() string { return "outpost" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPublish,
		mqtt.OnSessionEstablished, mqtt.OnDisconnect,
	}, []byte{b})
}

// OnConnectAuthenticate admits a device whose username and client id are its
// device id and whose password is its current secret.
func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	id := string(pk.Connect.Username)
	ok := id != "" && cl.ID == id && h.opts.Auth.Authenticate(h.b.ctx, id, string(pk.Connect.Password))
	if !ok {
		h.b.authFailures.Inc()
		h.b.logger.Warn("MQTT connection refused", "client", cl.ID, "username", id, "remote", cl.Net.Remote)
	}
	return ok
}

// OnACLCheck lets a device use only its own topics, and publish to none of
// the shadow response topics and jobs answer and notification topics,
// which only the hub publishes on.
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if protocol.DeviceMayUse(string(cl.Properties.Username), topic) && !(write && (protocol.IsShadowResponseTopic(topic) || protocol.IsJobsServerTopic(topic))) {
		return true
	}
	h.b.aclDenied.Inc()
	h.b.logger.Warn("MQTT topic denied", "device", string(cl.Properties.Username), "topic", topic, "publish", write)
	return false
}

func (h *hook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if cl.Net.Inline {
		return
	}
	h.opts.Presence.SetPresence(h.b.ctx, cl.ID, true, "")
}

func (h *hook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	if cl.Net.Inline || cl.IsTakenOver() || len(cl.Properties.Username) == 0 {
		return
	}
	h.opts.Presence.SetPresence(context.WithoutCancel(h.b.ctx), cl.ID, false, "")
}

// OnPublish stores telemetry before the broker acknowledges it, and records
// status messages. Malformed telemetry is refused with reason code 0x99
// (payload format invalid) for MQTT v5 clients, and acknowledged but dropped
// for MQTT 3.1.1 clients, which have no way to hear a refusal.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	id, kind, err := protocol.ParseTopic(pk.TopicName)
	if err != nil || id != cl.ID {
		return pk, nil // other own topics (shadow, jobs) pass through
	}
	switch kind {
	case protocol.KindTelemetry:
		_, err := h.opts.Ingest.Handle(h.b.ctx, id, pk.Payload, pk.Properties.ContentType)
		switch {
		case err == nil:
			return pk, nil
		case protocol.CodeOf(err) != "":
			h.b.logger.Warn("telemetry rejected", "device", id, "err", err)
			if cl.Properties.ProtocolVersion < 5 {
				return pk, packets.CodeSuccessIgnore
			}
			return pk, packets.Code{Code: packets.ErrPayloadFormatInvalid.Code, Reason: truncate(err.Error(), 200)}
		default:
			// Not stored: send no PUBACK and drop the connection, so the
			// client redelivers the batch once it reconnects.
			h.b.logger.Error("telemetry not stored; disconnecting client so it redelivers", "device", id, "err", err)
			cl.Stop(err)
			return pk, packets.ErrRejectPacket
		}
	case protocol.KindStatus:
		st, err := protocol.DecodeStatus(pk.Payload)
		if err != nil {
			h.b.logger.Warn("status rejected", "device", id, "err", err)
			return pk, nil
		}
		online := st.GetState() != outpostv1.Status_STATE_OFFLINE
		var spool *store.SpoolStats
		if sp := st.GetSpool(); sp != nil {
			spool = &store.SpoolStats{Points: sp.GetPoints(), Bytes: sp.GetBytes(), Dropped: sp.GetDropped(), Oldest: msTime(sp.GetOldestUnixMs())}
		}
		h.opts.Presence.RecordStatus(h.b.ctx, id, online && !cl.Closed(), st.GetAgentVersion(), spool)
	}
	return pk, nil
}

func msTime(ms int64) time.Time {
	if ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
