package discovery

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/outpost-edge/outpost/gen/outpost/api/v1"
)

// Reconnect backoff of Watch and of the resolver: it starts at
// minBackoff, doubles after every failed attempt up to maxBackoff, and
// starts over once a stream delivered a snapshot.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// ResolveOption narrows Resolve and Watch.
type ResolveOption func(*apiv1.ResolveRequest)

// WithTags keeps only instances carrying every one of tags.
func WithTags(tags ...string) ResolveOption {
	return func(r *apiv1.ResolveRequest) { r.Tags = append(r.Tags, tags...) }
}

// IncludeWarning also returns instances whose health is warning; by default
// only passing ones are returned.
func IncludeWarning() ResolveOption {
	return func(r *apiv1.ResolveRequest) { r.IncludeWarning = true }
}

func resolveRequest(name string, opts []ResolveOption) (*apiv1.ResolveRequest, error) {
	if name == "" {
		return nil, fmt.Errorf("empty service name: %w", ErrInvalidArgument)
	}
	req := &apiv1.ResolveRequest{Service: name}
	for _, opt := range opts {
		opt(req)
	}
	return req, nil
}

// Resolve returns the passing instances of service name (and warning ones
// with IncludeWarning), in the hub's order.
func (c *Client) Resolve(ctx context.Context, name string, opts ...ResolveOption) ([]Instance, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	req, err := resolveRequest(name, opts)
	if err != nil {
		return nil, fmt.Errorf("resolving: %w", err)
	}
	resp, err := c.rpc.Resolve(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", name, err)
	}
	return filterUsable(resp.GetInstances(), req.GetIncludeWarning()), nil
}

// Watch sends the passing instances of service name at once, then again
// after every change, until ctx ends or the client is closed; then it closes
// the channel. The channel holds only the latest snapshot: a slow reader
// skips intermediate ones, never the last. When the stream to the hub
// breaks, Watch reconnects with a backoff from 100 ms to 5 s and sends the
// snapshot the hub answers with; in between the last one stays valid.
func (c *Client) Watch(ctx context.Context, name string, opts ...ResolveOption) (<-chan []Instance, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	req, err := resolveRequest(name, opts)
	if err != nil {
		return nil, fmt.Errorf("watching: %w", err)
	}
	ch := make(chan []Instance, 1)
	go func() {
		defer close(ch)
		c.watch(ctx, req, func(snap []Instance) {
			// The only sender: after draining, the send cannot block.
			select {
			case <-ch:
			default:
			}
			ch <- snap
		}, nil)
	}()
	return ch, nil
}

// watch runs Watch streams for req until ctx ends or the client closes,
// calling onSnapshot with every snapshot and onErr (if not nil) with every
// error that broke or prevented a stream. It returns when ctx ends.
func (c *Client) watch(ctx context.Context, req *apiv1.ResolveRequest, onSnapshot func([]Instance), onErr func(error)) {
	logger := c.logger.With("service", req.GetService())
	backoff := minBackoff
	for {
		got, err := c.watchOnce(ctx, req, onSnapshot)
		if ctx.Err() != nil || c.closed.Load() {
			return
		}
		if got {
			backoff = minBackoff
		}
		logger.Warn("registry watch broke, reconnecting", "err", err, "backoff", backoff)
		if onErr != nil {
			onErr(err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// watchOnce runs one Watch stream until it fails; got reports whether it
// delivered at least one snapshot.
func (c *Client) watchOnce(ctx context.Context, req *apiv1.ResolveRequest, onSnapshot func([]Instance)) (got bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.Watch(ctx, req)
	if err != nil {
		return false, fmt.Errorf("opening watch of %s: %w", req.GetService(), err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return got, fmt.Errorf("receiving watch of %s: %w", req.GetService(), err)
		}
		got = true
		onSnapshot(filterUsable(resp.GetInstances(), req.GetIncludeWarning()))
	}
}

// Register registers an instance with a TTL and returns it as the hub
// stored it (with the ID the hub made up if r.ID was empty). Keep it passing
// with KeepAlive.
func (c *Client) Register(ctx context.Context, r Registration) (Instance, error) {
	if c.closed.Load() {
		return Instance{}, ErrClosed
	}
	if r.Port < 1 || r.Port > 65535 {
		return Instance{}, fmt.Errorf("registering %s: port %d out of range: %w", r.Service, r.Port, ErrInvalidArgument)
	}
	p, err := c.rpc.Register(ctx, &apiv1.RegisterRequest{Instance: r.proto()})
	if err != nil {
		return Instance{}, fmt.Errorf("registering %s: %w", r.Service, err)
	}
	return instanceFromProto(p), nil
}

// KeepAlive renews the instance service/id every interval until ctx ends,
// then returns nil. A failed renewal is logged and retried at the next tick
// (pick every well below the TTL, a third of it for instance, so one lost
// renewal does not turn the instance critical). It returns an error matching
// ErrNotRegistered when the hub no longer knows the instance, and ErrClosed
// when the client is closed.
func (c *Client) KeepAlive(ctx context.Context, service, id string, every time.Duration) error {
	if every <= 0 {
		return fmt.Errorf("keeping %s/%s alive: interval %s: %w", service, id, every, ErrInvalidArgument)
	}
	logger := c.logger.With("service", service, "id", id)
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
		if c.closed.Load() {
			return ErrClosed
		}
		err := c.renew(ctx, service, id, max(every, time.Second))
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrNotRegistered):
			return fmt.Errorf("keeping %s/%s alive: %w", service, id, err)
		default:
			logger.Warn("renewing registration failed, retrying", "err", err)
		}
	}
}

func (c *Client) renew(ctx context.Context, service, id string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := c.rpc.Renew(ctx, &apiv1.RenewRequest{Service: service, Id: id})
	if status.Code(err) == codes.NotFound {
		return fmt.Errorf("renewing: %w: %w", ErrNotRegistered, err)
	}
	if err != nil {
		return fmt.Errorf("renewing: %w", err)
	}
	return nil
}

// Deregister removes the instance service/id from the registry.
func (c *Client) Deregister(ctx context.Context, service, id string) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if _, err := c.rpc.Deregister(ctx, &apiv1.DeregisterRequest{Service: service, Id: id}); err != nil {
		return fmt.Errorf("deregistering %s/%s: %w", service, id, err)
	}
	return nil
}
