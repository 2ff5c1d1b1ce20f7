package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdDialTimeout bounds connecting to etcd and NewEtcdBackend's first
// request.
const etcdDialTimeout = 5 * time.Second

// EtcdBackend keeps instances in etcd as JSON at PREFIX/SERVICE/ID. An
// instance put with a ttl gets a new lease of that ttl (rounded up to
// whole seconds; etcd may raise it to its minimum lease TTL), so every
// renewal is a Put with a fresh lease; the old lease is left to expire
// with no key. When a lease expires etcd deletes the key, so an expired
// TTL instance disappears rather than turning critical.
type EtcdBackend struct {
	cli    *clientv3.Client
	prefix string
}

var _ Backend = (*EtcdBackend)(nil)

// NewEtcdBackend connects to the etcd cluster at endpoints ("host:port" or
// "http://host:port") and checks that it answers. prefix is the key
// prefix; "/" is added when missing.
func NewEtcdBackend(ctx context.Context, endpoints []string, prefix string) (Backend, error) {
	if len(endpoints) == 0 {
		return nil, fmt.Errorf("%w: no etcd endpoints", ErrInvalid)
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: etcdDialTimeout,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("connecting to etcd %s: %w", strings.Join(endpoints, ","), err)
	}
	cctx, cancel := context.WithTimeout(ctx, etcdDialTimeout)
	defer cancel()
	if _, err := cli.Get(cctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		cli.Close()
		return nil, fmt.Errorf("reaching etcd %s: %w", strings.Join(endpoints, ","), err)
	}
	return &EtcdBackend{cli: cli, prefix: prefix}, nil
}

func (b *EtcdBackend) key(service, id string) string { return b.prefix + service + "/" + id }

// servicePrefix is the key prefix of service's instances, or of all.
func (b *EtcdBackend) servicePrefix(service string) string {
	if service == "" {
		return b.prefix
	}
	return b.prefix + service + "/"
}

// Put stores in, with a new lease of ttl when ttl > 0.
func (b *EtcdBackend) Put(ctx context.Context, in Instance, ttl time.Duration) error {
	doc, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("encoding instance %s: %w", in.Key(), err)
	}
	var opts []clientv3.OpOption
	if ttl > 0 {
		lease, err := b.cli.Grant(ctx, int64(math.Ceil(ttl.Seconds())))
		if err != nil {
			return fmt.Errorf("granting a lease for %s: %w", in.Key(), err)
		}
		opts = append(opts, clientv3.WithLease(lease.ID))
	}
	if _, err := b.cli.Put(ctx, b.key(in.Service, in.ID), string(doc), opts...); err != nil {
		return fmt.Errorf("storing instance %s: %w", in.Key(), err)
	}
	return nil
}

// Delete removes an instance; a missing one is not an error.
func (b *EtcdBackend) Delete(ctx context.Context, service, id string) error {
	if _, err := b.cli.Delete(ctx, b.key(service, id)); err != nil {
		return fmt.Errorf("deleting instance %s/%s: %w", service, id, err)
	}
	return nil
}

// Get returns one instance or ErrNotFound.
func (b *EtcdBackend) Get(ctx context.Context, service, id string) (Instance, error) {
	resp, err := b.cli.Get(ctx, b.key(service, id))
	if err != nil {
		return Instance{}, fmt.Errorf("reading instance %s/%s: %w", service, id, err)
	}
	if len(resp.Kvs) == 0 {
		return Instance{}, fmt.Errorf("%w: %s/%s", ErrNotFound, service, id)
	}
	var in Instance
	if err := json.Unmarshal(resp.Kvs[0].Value, &in); err != nil {
		return Instance{}, fmt.Errorf("decoding instance %s/%s: %w", service, id, err)
	}
	return in, nil
}

// List returns the instances of service ("" for all), sorted by service
// then id.
func (b *EtcdBackend) List(ctx context.Context, service string) ([]Instance, error) {
	resp, err := b.cli.Get(ctx, b.servicePrefix(service), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("listing instances: %w", err)
	}
	out := make([]Instance, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var in Instance
		if err := json.Unmarshal(kv.Value, &in); err != nil {
			return nil, fmt.Errorf("decoding instance %s: %w", kv.Key, err)
		}
		out = append(out, in)
	}
	sortInstances(out)
	return out, nil
}

// Watch sends the changes of service ("" for all) made after it returns,
// until ctx ends or etcd ends the watch (then the channel closes early).
func (b *EtcdBackend) Watch(ctx context.Context, service string) (<-chan Event, error) {
	prefix := b.servicePrefix(service)
	// Start right after the current revision, so that no change made after
	// Watch returns is missed while etcd sets the watch up.
	resp, err := b.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return nil, fmt.Errorf("watching %s: %w", prefix, err)
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	wch := b.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	out := make(chan Event)
	go func() {
		defer close(out)
		defer cancel()
		for wresp := range wch {
			if wresp.Canceled || wresp.Err() != nil {
				return
			}
			for _, ev := range wresp.Events {
				e, ok := b.event(ev)
				if !ok {
					continue
				}
				select {
				case out <- e:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// event translates an etcd event; ok is false for keys that are not
// instances.
func (b *EtcdBackend) event(ev *clientv3.Event) (Event, bool) {
	rest := strings.TrimPrefix(string(ev.Kv.Key), b.prefix)
	service, id, ok := strings.Cut(rest, "/")
	if !ok {
		return Event{}, false
	}
	if ev.Type == clientv3.EventTypeDelete {
		return Event{Type: EventDelete, Instance: Instance{Service: service, ID: id}}, true
	}
	var in Instance
	if err := json.Unmarshal(ev.Kv.Value, &in); err != nil {
		return Event{}, false
	}
	return Event{Type: EventPut, Instance: in}, true
}

// Close closes the etcd client.
func (b *EtcdBackend) Close() error { return b.cli.Close() }
