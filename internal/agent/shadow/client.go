package shadow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/outpost-edge/outpost/internal/agent/config"
	"github.com/outpost-edge/outpost/protocol"
)

// Options configure a Client.
type Options struct {
	// Config is agent.yaml, validated: the baseline and the validation
	// rules.
	Config config.Config
	// LogLevel is the level the agent's logger starts at.
	LogLevel slog.Level
	// Path is the file the last applied desired state is kept in.
	Path string
	// Apply makes next the running settings; prev is what runs now. It is
	// called from New's caller (ApplySaved) or from Run's goroutine, never
	// concurrently, and must not block for long.
	Apply func(prev, next Settings)
	// Publish publishes a shadow request (QoS 1) and fails while the agent
	// is not connected. It may block until the broker acknowledges.
	Publish func(ctx context.Context, topic string, payload []byte) error
	// Logger receives the client's logs; nil discards them.
	Logger *slog.Logger
}

// queueLen is how many incoming shadow messages wait for Run at most;
// when more arrive the client asks for the whole document instead.
const queueLen = 64

type message struct {
	topic   string
	payload []byte
}

// Client keeps the agent's running settings in line with its classic
// shadow: it applies the desired state (the saved one at start, then the
// hub's), reports what it applied, and saves what it applied.
type Client struct {
	opts Options
	log  *slog.Logger
	base Settings
	id   string

	// Topics, fixed at New.
	deltaTopic, docsTopic, getAccepted, getRejected, getTopic, updateTopic string

	msgs    chan message
	getReq  chan struct{}
	started atomic.Bool
	tokens  atomic.Uint64

	mu sync.Mutex // guards state and current
	// state is the desired state and version in force, as saved.
	state State
	// current is what Resolve made of state.
	current Result

	// reported is what the hub's state.reported holds, as far as the
	// client knows; only Run's goroutine uses it.
	reported map[string]any
}

// New loads the saved desired state and works out the settings it asks
// for; nothing is applied until ApplySaved. A saved state that cannot be
// read is logged and ignored: the agent then starts from agent.yaml.
func New(opts Options) (*Client, error) {
	var errs []error
	if opts.Path == "" {
		errs = append(errs, errors.New("no state file"))
	}
	if opts.Apply == nil || opts.Publish == nil {
		errs = append(errs, errors.New("Apply and Publish are required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("creating shadow client: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	id := opts.Config.DeviceID
	c := &Client{
		opts:        opts,
		log:         opts.Logger.With("component", "shadow"),
		base:        Baseline(opts.Config, opts.LogLevel),
		id:          id,
		deltaTopic:  protocol.ShadowTopic(id, "", protocol.ShadowOpUpdate, protocol.ShadowDelta),
		docsTopic:   protocol.ShadowTopic(id, "", protocol.ShadowOpUpdate, protocol.ShadowDocuments),
		getAccepted: protocol.ShadowTopic(id, "", protocol.ShadowOpGet, protocol.ShadowAccepted),
		getRejected: protocol.ShadowTopic(id, "", protocol.ShadowOpGet, protocol.ShadowRejected),
		getTopic:    protocol.ShadowTopic(id, "", protocol.ShadowOpGet, ""),
		updateTopic: protocol.ShadowTopic(id, "", protocol.ShadowOpUpdate, ""),
		msgs:        make(chan message, queueLen),
		getReq:      make(chan struct{}, 1),
	}
	st, err := Load(opts.Path)
	if err != nil {
		c.log.Error("ignoring the saved shadow state; starting from agent.yaml", "err", err)
		st = State{}
	}
	c.state = st
	c.current = Resolve(opts.Config, c.base, c.base, st.Desired)
	return c, nil
}

// Subscriptions are the topics the client needs the uplink to subscribe to.
func (c *Client) Subscriptions() []string {
	return []string{c.deltaTopic, c.docsTopic, c.getAccepted, c.getRejected}
}

// Baseline returns the settings of agent.yaml alone.
func (c *Client) Baseline() Settings { return c.base.Clone() }

// Settings returns the settings in force.
func (c *Client) Settings() Settings {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.current.Settings.Clone()
}

// Applied returns the version of the desired state in force and the keys
// that were refused, with why.
func (c *Client) Applied() (version int64, errs map[string]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state.Version, maps.Clone(c.current.Errors)
}

// ApplySaved applies the saved desired state over agent.yaml, so that the
// agent runs it before (and without) reaching the hub. Call it once,
// before Run.
func (c *Client) ApplySaved() {
	c.mu.Lock()
	cur, st := c.current, c.state
	c.mu.Unlock()
	if st.Version == 0 && len(st.Desired) == 0 {
		return
	}
	c.opts.Apply(c.base.Clone(), cur.Settings.Clone())
	c.log.Info("running the saved shadow state", "version", st.Version, "refused", len(cur.Errors))
}

// HandleMessage takes a PUBLISH that arrived on one of Subscriptions. It
// does not block: it may be called from the MQTT client's goroutine.
func (c *Client) HandleMessage(topic string, payload []byte) {
	select {
	case c.msgs <- message{topic: topic, payload: slices.Clone(payload)}:
	default:
		c.log.Warn("too many shadow messages waiting; asking for the whole shadow instead")
		c.requestGet()
	}
}

// Connected tells the client that a connection is up and subscribed; it
// asks the hub for the whole shadow. It does not block.
func (c *Client) Connected(context.Context) { c.requestGet() }

func (c *Client) requestGet() {
	select {
	case c.getReq <- struct{}{}:
	default:
	}
}

// Run handles the shadow messages and get requests until ctx is done,
// then returns nil. It may be called once.
func (c *Client) Run(ctx context.Context) error {
	if !c.started.CompareAndSwap(false, true) {
		return ErrRunTwice
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.getReq:
			c.publishGet(ctx)
		case m := <-c.msgs:
			c.handle(ctx, m)
		}
	}
}

func (c *Client) token(kind string) string {
	return "outpost-agent-" + kind + "-" + strconv.FormatUint(c.tokens.Add(1), 10)
}

func (c *Client) publishGet(ctx context.Context) {
	payload, _ := json.Marshal(map[string]string{"clientToken": c.token("get")})
	if err := c.opts.Publish(ctx, c.getTopic, payload); err != nil {
		// The next connection asks again.
		c.log.Debug("asking for the shadow failed", "err", err)
	}
}

func (c *Client) handle(ctx context.Context, m message) {
	switch m.topic {
	case c.getAccepted:
		var doc protocol.ShadowDocument
		if err := json.Unmarshal(m.payload, &doc); err != nil {
			c.log.Warn("ignoring a shadow document that does not decode", "err", err)
			return
		}
		desired, _ := doc.State["desired"].(map[string]any)
		reported, _ := doc.State["reported"].(map[string]any)
		c.reported = reported
		c.mu.Lock()
		applied := c.state.Version
		c.mu.Unlock()
		if doc.Version < applied {
			c.log.Warn("the hub's shadow is older than the state in force; following the hub", "hub_version", doc.Version, "applied_version", applied)
		}
		c.adopt(ctx, doc.Version, desired)
	case c.getRejected:
		var e protocol.ShadowError
		if err := json.Unmarshal(m.payload, &e); err != nil {
			c.log.Warn("ignoring a shadow error that does not decode", "err", err)
			return
		}
		if e.Code != 404 {
			c.log.Warn("the hub refused to send the shadow", "code", e.Code, "message", e.Message)
			return
		}
		// No shadow: nothing is desired, agent.yaml applies.
		c.reported = nil
		c.adopt(ctx, 0, nil)
	case c.deltaTopic:
		var d protocol.ShadowDeltaMessage
		if err := json.Unmarshal(m.payload, &d); err != nil {
			c.log.Warn("ignoring a shadow delta that does not decode", "err", err)
			return
		}
		c.mu.Lock()
		applied, desired := c.state.Version, cloneValue(c.state.Desired)
		c.mu.Unlock()
		if d.Version <= applied {
			c.log.Debug("ignoring a shadow delta not newer than the state in force", "version", d.Version, "applied_version", applied)
			return
		}
		dm, _ := desired.(map[string]any)
		c.adopt(ctx, d.Version, Merge(dm, d.State))
	case c.docsTopic:
		// update/documents carries the whole desired state after every
		// update, so it also tells of deleted keys, which a delta cannot.
		var docs protocol.ShadowDocumentsMessage
		if err := json.Unmarshal(m.payload, &docs); err != nil {
			c.log.Warn("ignoring a shadow documents message that does not decode", "err", err)
			return
		}
		desired, _ := docs.Current.State["desired"].(map[string]any)
		c.mu.Lock()
		applied, inForce := c.state.Version, c.state.Desired
		c.mu.Unlock()
		if docs.Current.Version < applied || equalDesired(inForce, desired) {
			return
		}
		c.adopt(ctx, docs.Current.Version, desired)
	}
}

// equalDesired reports whether two desired states are the same, an absent
// one being the same as an empty one.
func equalDesired(a any, b map[string]any) bool {
	am, _ := a.(map[string]any)
	if len(am) == 0 && len(b) == 0 {
		return true
	}
	return reflect.DeepEqual(am, b)
}

// adopt applies desired at version, saves it and reports the outcome.
func (c *Client) adopt(ctx context.Context, version int64, desired map[string]any) {
	c.mu.Lock()
	prev := c.current.Settings.Clone()
	c.mu.Unlock()
	res := Resolve(c.opts.Config, c.base, prev, desired)
	if !prev.Equal(res.Settings) {
		c.opts.Apply(prev, res.Settings.Clone())
	}
	st := State{Version: version, Desired: desired}
	if err := Save(c.opts.Path, st); err != nil {
		c.log.Error("saving the shadow state failed; a restart without the hub runs the previous one", "err", err)
	}
	c.mu.Lock()
	c.state, c.current = st, res
	c.mu.Unlock()
	if len(res.Errors) > 0 {
		c.log.Warn("some desired settings were not applied; see reported."+KeyErrors, "version", version, "errors", res.Errors)
	}
	c.log.Info("applied the shadow's desired state", "version", version, "applied", len(res.Applied), "refused", len(res.Errors))
	c.report(ctx, res, version)
}

// report publishes the change of state.reported.
func (c *Client) report(ctx context.Context, res Result, version int64) {
	rep := Reported(res, version)
	patch := MergePatch(c.reported, rep)
	if len(patch) == 0 {
		return
	}
	payload, err := json.Marshal(map[string]any{
		"state":       map[string]any{"reported": patch},
		"clientToken": c.token("report"),
	})
	if err != nil {
		c.log.Error("encoding the shadow report failed", "err", err)
		return
	}
	if err := c.opts.Publish(ctx, c.updateTopic, payload); err != nil {
		// The next connection's get reports again.
		c.log.Debug("reporting the shadow state failed", "err", err)
		return
	}
	c.reported = rep
}
