package shadow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/store"
	"github.com/outpost-edge/outpost/protocol"
	"github.com/prometheus/client_golang/prometheus"
)

// Store is what the shadow service needs from storage.
type Store interface {
	// Shadow returns the stored shadow, a deleted one (Deleted set)
	// included, or store.ErrNotFound if it never existed.
	Shadow(ctx context.Context, deviceID, name string) (store.Shadow, error)
	// UpdateShadow runs fn on the stored shadow (found false: it never
	// existed) and stores the shadow fn returns, atomically: nothing else
	// is written to the shadow between fn's read and the write. An error
	// from fn aborts and is returned as is; store.ErrNotFound if the device
	// does not exist; store.ErrVersionConflict if another writer got in
	// between after all.
	UpdateShadow(ctx context.Context, deviceID, name string, fn func(cur store.Shadow, found bool) (store.Shadow, error)) (store.Shadow, error)
	// DeleteShadow marks a live shadow deleted, keeping its version, and
	// returns that version; store.ErrNotFound if there is none.
	DeleteShadow(ctx context.Context, deviceID, name string, at time.Time) (int64, error)
}

// Publisher sends a message to MQTT subscribers (the embedded broker's
// inline client, or a client of an external broker). Publish must not call
// back into the Service synchronously except through HandleMQTT.
type Publisher interface {
	Publish(topic string, payload []byte, retain bool, qos byte) error
}

// maxAttempts bounds the tries of an update without an expected version
// whose store write lost to another writer.
const maxAttempts = 3

// Service gets, updates and deletes device shadows. It is safe for
// concurrent use: every update is a read-modify-write inside one store
// transaction, so concurrent updates (MQTT, REST, other hub processes)
// never lose one.
type Service struct {
	store  Store
	pub    Publisher
	logger *slog.Logger
	now    func() time.Time
	seed   maphash.Seed
	// locks serialize the writes (and their announcements, which thus go
	// out in version order) to each shadow; a shadow maps to one of them by
	// hash.
	locks [64]sync.Mutex
	// onChange is called after every accepted update or delete; set
	// before the Service is used (OnChange), read-only afterwards.
	onChange func(deviceID, name string)

	updates  prometheus.Counter
	rejected *prometheus.CounterVec
}

// NewService returns a Service over st that announces accepted updates
// through pub (nil: announce nothing) and registers its metrics with reg
// (nil: none).
func NewService(st Store, pub Publisher, logger *slog.Logger, reg prometheus.Registerer) *Service {
	s := &Service{
		store: st, pub: pub, logger: logger.With("component", "shadow"), now: time.Now, seed: maphash.MakeSeed(),
		updates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_shadow_updates_total", Help: "Accepted shadow updates (MQTT and REST).",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_shadow_rejected_total", Help: "Refused shadow requests, by operation and status code.",
		}, []string{"op", "code"}),
	}
	if reg != nil {
		reg.MustRegister(s.updates, s.rejected)
	}
	return s
}

// OnChange makes the Service call fn(deviceID, name) after every accepted
// update or delete of a shadow (REST or MQTT). fn runs while the shadow's
// write lock is held, so calls for one shadow come in version order; it
// must return quickly and must not call back into the Service. Call
// OnChange before the Service is used.
func (s *Service) OnChange(fn func(deviceID, name string)) { s.onChange = fn }

func (s *Service) lock(deviceID, name string) *sync.Mutex {
	var h maphash.Hash
	h.SetSeed(s.seed)
	h.WriteString(deviceID)
	h.WriteByte(0)
	h.WriteString(name)
	return &s.locks[h.Sum64()%uint64(len(s.locks))]
}

// count records a refused request.
func (s *Service) count(op string, err error) {
	code, _ := codeOf(err)
	s.rejected.WithLabelValues(op, strconv.Itoa(code)).Inc()
}

func validNames(deviceID, name string) error {
	if err := protocol.ValidDeviceID(deviceID); err != nil {
		return reject(http.StatusBadRequest, "Invalid thing name: %s", err.Error())
	}
	if name != "" {
		if err := protocol.ValidShadowName(name); err != nil {
			return reject(http.StatusBadRequest, "Invalid shadow name: %s", err.Error())
		}
	}
	return nil
}

// notFound is AWS IoT's rejection for a missing shadow.
func notFound(deviceID, name string) *Rejection {
	n := deviceID
	if name != "" {
		n += "~" + name
	}
	return reject(http.StatusNotFound, "No shadow exists with name: '%s'", n)
}

// docOf decodes a stored shadow: the document, and whether it exists (a
// deleted shadow only lends its version).
func docOf(sh store.Shadow, found bool) (Document, bool, error) {
	if !found {
		return Document{}, false, nil
	}
	if sh.Deleted {
		return Document{Version: sh.Version}, false, nil
	}
	d, err := decodeDoc(sh.Doc, sh.Version)
	return d, err == nil, err
}

// load returns the current document and whether it exists.
func (s *Service) load(ctx context.Context, deviceID, name string) (Document, bool, error) {
	sh, err := s.store.Shadow(ctx, deviceID, name)
	found := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return Document{}, false, fmt.Errorf("reading shadow: %w", err)
	}
	return docOf(sh, found)
}

// Get returns a shadow's full document (with delta); a *Rejection matching
// ErrNotFound if it does not exist.
func (s *Service) Get(ctx context.Context, deviceID, name string) (protocol.ShadowDocument, error) {
	doc, err := s.get(ctx, deviceID, name, "")
	if err != nil {
		s.count(protocol.ShadowOpGet, err)
	}
	return doc, err
}

func (s *Service) get(ctx context.Context, deviceID, name, clientToken string) (protocol.ShadowDocument, error) {
	if err := validNames(deviceID, name); err != nil {
		return protocol.ShadowDocument{}, err
	}
	d, exists, err := s.load(ctx, deviceID, name)
	if err != nil {
		return protocol.ShadowDocument{}, err
	}
	if !exists {
		return protocol.ShadowDocument{}, notFound(deviceID, name)
	}
	return Full(d, s.now().Unix(), clientToken), nil
}

// UpdateResult is an accepted update.
type UpdateResult struct {
	// Accepted is the update/accepted body: the request's state echoed.
	Accepted protocol.ShadowDocument
	// Document is the whole shadow afterwards, as Get returns it.
	Document protocol.ShadowDocument
}

// PatchDesired merges a JSON merge patch into a shadow's desired section,
// the REST API's PATCH: the patch is the desired fragment itself. With
// version not nil the shadow must be at that version.
func (s *Service) PatchDesired(ctx context.Context, deviceID, name string, patch []byte, version *int64) (protocol.ShadowDocument, error) {
	fields, err := ParsePatch(patch)
	if err != nil {
		s.count(protocol.ShadowOpUpdate, err)
		return protocol.ShadowDocument{}, err
	}
	res, err := s.Update(ctx, deviceID, name, Request{Desired: Patch{Present: true, Fields: fields}, Version: version})
	return res.Document, err
}

// Update applies a request (from ParseRequest) to a shadow, creating it if
// needed, and publishes update/delta (when the request changed desired and desired
// still differs from reported) and update/documents.
func (s *Service) Update(ctx context.Context, deviceID, name string, req Request) (UpdateResult, error) {
	res, err := s.update(ctx, deviceID, name, req)
	if err != nil {
		s.count(protocol.ShadowOpUpdate, err)
		return res, err
	}
	s.updates.Inc()
	return res, nil
}

func (s *Service) update(ctx context.Context, deviceID, name string, req Request) (UpdateResult, error) {
	if err := validNames(deviceID, name); err != nil {
		return UpdateResult{}, err
	}
	for _, p := range []Patch{req.Desired, req.Reported} {
		if err := ValidatePatch(p.Fields); err != nil {
			return UpdateResult{}, err
		}
	}
	mu := s.lock(deviceID, name)
	mu.Lock()
	defer mu.Unlock()
	now := s.now()
	ts := now.Unix()
	var (
		prev *Document
		next Document
	)
	update := func(sh store.Shadow, found bool) (store.Shadow, error) {
		cur, exists, err := docOf(sh, found)
		if err != nil {
			return store.Shadow{}, err
		}
		if req.Version != nil && *req.Version != cur.Version {
			return store.Shadow{}, reject(http.StatusConflict, msgVersionConflict)
		}
		next = Apply(cur, req, ts)
		if StateSize(next) > protocol.MaxShadowStateBytes {
			return store.Shadow{}, reject(http.StatusRequestEntityTooLarge, msgTooLarge)
		}
		b, err := encodeDoc(next)
		if err != nil {
			return store.Shadow{}, fmt.Errorf("encoding shadow: %w", err)
		}
		prev = nil
		if exists {
			prev = &cur
		}
		return store.Shadow{Version: next.Version, Doc: b, UpdatedAt: now}, nil
	}
	_, err := s.store.UpdateShadow(ctx, deviceID, name, update)
	// An engine that does not serialize writers may report that another
	// writer got in between: without an expected version, try again.
	for attempt := 1; errors.Is(err, store.ErrVersionConflict) && req.Version == nil && attempt < maxAttempts; attempt++ {
		_, err = s.store.UpdateShadow(ctx, deviceID, name, update)
	}
	var r *Rejection
	switch {
	case errors.As(err, &r):
		return UpdateResult{}, r
	case errors.Is(err, store.ErrNotFound):
		return UpdateResult{}, reject(http.StatusNotFound, "No device exists with id: '%s'", deviceID)
	case errors.Is(err, store.ErrVersionConflict):
		return UpdateResult{}, reject(http.StatusConflict, msgVersionConflict)
	case err != nil:
		return UpdateResult{}, fmt.Errorf("updating shadow: %w", err)
	}
	s.announce(deviceID, name, req, prev, next, ts)
	if s.onChange != nil {
		s.onChange(deviceID, name)
	}
	return UpdateResult{Accepted: Accepted(req, next.Version, ts), Document: Full(next, ts, "")}, nil
}

// announce publishes update/delta and update/documents for an accepted
// update; s.lock(deviceID, name) is held, so announcements leave in
// version order.
func (s *Service) announce(deviceID, name string, req Request, prev *Document, next Document, ts int64) {
	if s.pub == nil {
		return
	}
	// Only a change of desired announces the delta (see docs/shadow.md): a
	// device that reports a value it could not apply does not get the same
	// delta back in a loop.
	if req.Desired.Present && !req.Desired.Clear {
		if delta := Delta(next.Desired, next.Reported); delta != nil {
			s.publish(protocol.ShadowTopic(deviceID, name, protocol.ShadowOpUpdate, protocol.ShadowDelta), protocol.ShadowDeltaMessage{
				State: delta, Metadata: DeltaMetadata(delta, next.MetaDesired),
				Version: next.Version, Timestamp: ts, ClientToken: req.ClientToken,
			})
		}
	}
	docs := protocol.ShadowDocumentsMessage{Current: sections(next), Timestamp: ts, ClientToken: req.ClientToken}
	if prev != nil {
		p := sections(*prev)
		docs.Previous = &p
	}
	s.publish(protocol.ShadowTopic(deviceID, name, protocol.ShadowOpUpdate, protocol.ShadowDocuments), docs)
}

func (s *Service) publish(topic string, v any) {
	b, err := json.Marshal(v)
	if err == nil {
		err = s.pub.Publish(topic, b, false, 1)
	}
	if err != nil {
		s.logger.Error("publishing shadow message", "topic", topic, "err", err)
	}
}

// Delete deletes a shadow and returns the version it had, which the next
// update continues from; a *Rejection matching ErrNotFound if it does not
// exist.
func (s *Service) Delete(ctx context.Context, deviceID, name string) (int64, error) {
	v, err := s.delete(ctx, deviceID, name)
	if err != nil {
		s.count(protocol.ShadowOpDelete, err)
	}
	return v, err
}

func (s *Service) delete(ctx context.Context, deviceID, name string) (int64, error) {
	if err := validNames(deviceID, name); err != nil {
		return 0, err
	}
	mu := s.lock(deviceID, name)
	mu.Lock()
	defer mu.Unlock()
	v, err := s.store.DeleteShadow(ctx, deviceID, name, s.now())
	if errors.Is(err, store.ErrNotFound) {
		return 0, notFound(deviceID, name)
	}
	if err != nil {
		return 0, fmt.Errorf("deleting shadow: %w", err)
	}
	s.logger.Info("shadow deleted", "device", deviceID, "shadow", name, "version", v)
	if s.onChange != nil {
		s.onChange(deviceID, name)
	}
	return v, nil
}
