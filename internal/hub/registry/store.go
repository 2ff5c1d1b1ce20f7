package registry

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/store"
)

// DocumentStore keeps JSON documents by kind and id (the hub's store).
// Its methods are safe for concurrent use.
type DocumentStore interface {
	CreateDocument(ctx context.Context, kind, id string, doc []byte, active bool, now time.Time) error
	SaveDocument(ctx context.Context, kind, id string, doc []byte, active bool, now time.Time) error
	Document(ctx context.Context, kind, id string) ([]byte, error)
	Documents(ctx context.Context, kind string, activeOnly bool) ([][]byte, error)
	DeleteDocument(ctx context.Context, kind, id string) error
}

// documentKind is the kind of the store's instance documents; their id is
// Instance.Key().
const documentKind = "registry"

// StoreBackend is the built-in Backend: one document per instance in the
// hub's store, and an in-process fan-out of changes for Watch. It does
// not delete TTL instances: the Service's sweeper marks expired ones
// critical. Watchers see only the changes made through this StoreBackend,
// so a hub must use one StoreBackend per store.
type StoreBackend struct {
	ds DocumentStore

	// mu serialises writes so that watchers see changes in the order the
	// store made them; it also guards subs.
	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

var _ Backend = (*StoreBackend)(nil)

// NewStoreBackend returns the built-in backend over ds.
func NewStoreBackend(ds DocumentStore) *StoreBackend {
	return &StoreBackend{ds: ds, subs: map[*subscriber]struct{}{}}
}

// Put stores in; ttl is ignored (see StoreBackend).
func (b *StoreBackend) Put(ctx context.Context, in Instance, _ time.Duration) error {
	doc, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("encoding instance %s: %w", in.Key(), err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	err = b.ds.SaveDocument(ctx, documentKind, in.Key(), doc, true, in.UpdatedAt)
	if errors.Is(err, store.ErrNotFound) {
		err = b.ds.CreateDocument(ctx, documentKind, in.Key(), doc, true, in.UpdatedAt)
	}
	if err != nil {
		return fmt.Errorf("storing instance %s: %w", in.Key(), err)
	}
	b.publish(Event{Type: EventPut, Instance: in})
	return nil
}

// Delete removes an instance; a missing one is not an error.
func (b *StoreBackend) Delete(ctx context.Context, service, id string) error {
	in := Instance{Service: service, ID: id}
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.ds.DeleteDocument(ctx, documentKind, in.Key())
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("deleting instance %s: %w", in.Key(), err)
	}
	b.publish(Event{Type: EventDelete, Instance: in})
	return nil
}

// Get returns one instance or ErrNotFound.
func (b *StoreBackend) Get(ctx context.Context, service, id string) (Instance, error) {
	key := Instance{Service: service, ID: id}.Key()
	doc, err := b.ds.Document(ctx, documentKind, key)
	if errors.Is(err, store.ErrNotFound) {
		return Instance{}, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	if err != nil {
		return Instance{}, fmt.Errorf("reading instance %s: %w", key, err)
	}
	var in Instance
	if err := json.Unmarshal(doc, &in); err != nil {
		return Instance{}, fmt.Errorf("decoding stored instance %s: %w", key, err)
	}
	return in, nil
}

// List returns the instances of service ("" for all), sorted by service
// then id. It reads every registry document: the registry is small.
func (b *StoreBackend) List(ctx context.Context, service string) ([]Instance, error) {
	docs, err := b.ds.Documents(ctx, documentKind, false)
	if err != nil {
		return nil, fmt.Errorf("listing instances: %w", err)
	}
	out := []Instance{}
	for _, doc := range docs {
		var in Instance
		if err := json.Unmarshal(doc, &in); err != nil {
			return nil, fmt.Errorf("decoding a stored instance: %w", err)
		}
		if service == "" || in.Service == service {
			out = append(out, in)
		}
	}
	sortInstances(out)
	return out, nil
}

func sortInstances(ins []Instance) {
	slices.SortFunc(ins, func(a, b Instance) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.ID, b.ID))
	})
}

// Watch sends the changes of service ("" for all) made after it returns,
// until ctx ends. Events queue without bound for a slow reader.
func (b *StoreBackend) Watch(ctx context.Context, service string) (<-chan Event, error) {
	sub := &subscriber{service: service, wake: make(chan struct{}, 1)}
	b.mu.Lock()
	b.subs[sub] = struct{}{}
	b.mu.Unlock()
	out := make(chan Event)
	go func() {
		defer close(out)
		defer func() {
			b.mu.Lock()
			delete(b.subs, sub)
			b.mu.Unlock()
		}()
		for {
			sub.mu.Lock()
			queue := sub.queue
			sub.queue = nil
			sub.mu.Unlock()
			for _, ev := range queue {
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
			select {
			case <-sub.wake:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// Close releases nothing: the store belongs to the hub.
func (b *StoreBackend) Close() error { return nil }

// publish queues ev for every interested watcher; b.mu is held.
func (b *StoreBackend) publish(ev Event) {
	for sub := range b.subs {
		if sub.service != "" && sub.service != ev.Instance.Service {
			continue
		}
		sub.mu.Lock()
		sub.queue = append(sub.queue, ev)
		sub.mu.Unlock()
		select {
		case sub.wake <- struct{}{}:
		default:
		}
	}
}

// subscriber is one Watch of a StoreBackend.
type subscriber struct {
	service string
	wake    chan struct{}
	mu      sync.Mutex // guards queue
	queue   []Event
}
