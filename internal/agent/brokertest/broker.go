package brokertest

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Message is a PUBLISH the broker received, or a will it sent.
type Message struct {
	ClientID    string
	Topic       string
	Payload     []byte
	ContentType string
	QoS         byte
	Retain      bool
}

// Broker is a running test broker. Its methods are safe for concurrent use.
type Broker struct {
	// Addr is the host:port it listens on; URL is mqtt://Addr.
	Addr, URL string

	srv  *mqtt.Server
	hook *recorder
	once sync.Once
}

// Start starts a broker on addr ("" picks a free loopback port) and closes
// it when the test ends. Pass a closed broker's Addr to restart "the same"
// broker: retained messages and sessions do not survive.
func Start(t testing.TB, addr string) *Broker {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("broker: listening on %s: %v", addr, err)
	}
	srv := mqtt.New(&mqtt.Options{InlineClient: false, Logger: slog.New(slog.DiscardHandler)})
	h := &recorder{}
	if err := srv.AddHook(h, nil); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddListener(listeners.NewNet("test", ln)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	b := &Broker{Addr: ln.Addr().String(), URL: "mqtt://" + ln.Addr().String(), srv: srv, hook: h}
	t.Cleanup(b.Close)
	return b
}

// Close stops the broker and drops every client without a DISCONNECT
// reason other than "server shutting down". It may be called twice.
func (b *Broker) Close() {
	b.once.Do(func() { _ = b.srv.Close() })
}

// Published returns, in arrival order, the PUBLISHes the broker accepted on
// topic (rejected ones are not included).
func (b *Broker) Published(topic string) []Message {
	return b.hook.messages(func(m Message) bool { return m.Topic == topic }, &b.hook.published)
}

// Wills returns the last-will messages the broker sent.
func (b *Broker) Wills() []Message {
	return b.hook.messages(func(Message) bool { return true }, &b.hook.wills)
}

// Retained returns the retained message on topic.
func (b *Broker) Retained(topic string) (Message, bool) {
	pk, ok := b.srv.Topics.Retained.Get(topic)
	if !ok {
		return Message{}, false
	}
	return toMessage(pk), true
}

// Reject makes the broker refuse PUBLISHes for which fn returns a non-zero
// MQTT v5 reason code (>= 0x80) with a PUBACK carrying that code.
func (b *Broker) Reject(fn func(m Message) byte) {
	b.hook.mu.Lock()
	defer b.hook.mu.Unlock()
	b.hook.reject = fn
}

// Kick closes clientID's network connection abruptly, as a network failure
// would; the broker then sends the client's will.
func (b *Broker) Kick(clientID string) error {
	cl, ok := b.srv.Clients.Get(clientID)
	if !ok || cl.Closed() {
		return errors.New("client not connected")
	}
	cl.Stop(errors.New("kicked by test"))
	return nil
}

// Connected reports whether clientID has an open connection.
func (b *Broker) Connected(clientID string) bool {
	cl, ok := b.srv.Clients.Get(clientID)
	return ok && !cl.Closed()
}

type recorder struct {
	mqtt.HookBase

	mu        sync.Mutex // guards the fields below
	published []Message
	wills     []Message
	reject    func(Message) byte
}

func (h *recorder) ID() string { return "recorder" }

func (h *recorder) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPublish, mqtt.OnWillSent:
		return true
	}
	return false
}

// OnConnectAuthenticate lets every client in.
func (h *recorder) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

// OnACLCheck allows every topic.
func (h *recorder) OnACLCheck(*mqtt.Client, string, bool) bool { return true }

func (h *recorder) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	m := toMessage(pk)
	m.ClientID = cl.ID
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.reject != nil {
		if code := h.reject(m); code != 0 {
			return pk, packets.Code{Code: code, Reason: "rejected by test"}
		}
	}
	h.published = append(h.published, m)
	return pk, nil
}

func (h *recorder) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	m := toMessage(pk)
	m.ClientID = cl.ID
	h.mu.Lock()
	defer h.mu.Unlock()
	h.wills = append(h.wills, m)
}

func (h *recorder) messages(keep func(Message) bool, from *[]Message) []Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Message
	for _, m := range *from {
		if keep(m) {
			out = append(out, m)
		}
	}
	return out
}

func toMessage(pk packets.Packet) Message {
	return Message{
		Topic:       pk.TopicName,
		Payload:     append([]byte(nil), pk.Payload...),
		ContentType: pk.Properties.ContentType,
		QoS:         pk.FixedHeader.Qos,
		Retain:      pk.FixedHeader.Retain,
	}
}
