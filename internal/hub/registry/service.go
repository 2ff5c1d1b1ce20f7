package registry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Options configure a Service.
type Options struct {
	// Backend stores the instances; required.
	Backend Backend
	// Logger; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// SweepInterval is how often Run looks for expired TTL instances and
	// due checks; 0 means 1s.
	SweepInterval time.Duration
	// DeregisterCriticalAfter deletes TTL and check instances that have
	// been critical this long; 0 never deletes them.
	DeregisterCriticalAfter time.Duration
	// HTTPClient runs the http checks (its redirects are not followed);
	// nil means a client without keep-alives.
	HTTPClient *http.Client
}

// Service is the registry. Its methods are safe for concurrent use.
type Service struct {
	backend  Backend
	logger   *slog.Logger
	now      func() time.Time
	sweep    time.Duration
	deregAge time.Duration
	client   *http.Client

	// mu serialises the read-modify-write updates of this Service
	// (Renew, SetHealth, the sweeper, Deregister) so that one does not
	// bring back an instance another just deleted.
	mu sync.Mutex
}

// New returns a Service over opts.Backend.
func New(opts Options) (*Service, error) {
	if opts.Backend == nil {
		return nil, errors.New("registry: a backend is required")
	}
	if opts.SweepInterval < 0 || opts.DeregisterCriticalAfter < 0 {
		return nil, errors.New("registry: negative sweep interval or deregister-critical-after")
	}
	s := &Service{
		backend:  opts.Backend,
		logger:   opts.Logger,
		now:      opts.Now,
		sweep:    opts.SweepInterval,
		deregAge: opts.DeregisterCriticalAfter,
	}
	if s.logger == nil {
		s.logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s.logger = s.logger.With("component", "registry")
	if s.now == nil {
		s.now = time.Now
	}
	if s.sweep == 0 {
		s.sweep = time.Second
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if opts.HTTPClient != nil {
		cp := *opts.HTTPClient
		c = &cp
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	s.client = c
	return s, nil
}

// setHealth changes in's health and output, keeping CriticalSince and
// UpdatedAt; it reports whether anything changed.
func setHealth(in *Instance, h Health, output string, now time.Time) bool {
	if in.Health == h && in.Output == output {
		return false
	}
	if h == Critical && in.Health != Critical {
		in.CriticalSince = now
	} else if h != Critical {
		in.CriticalSince = time.Time{}
	}
	in.Health, in.Output, in.UpdatedAt = h, output, now
	return true
}

// lease is the ttl to Put in with: for a TTL instance the time left until
// it expires (a whole TTL again once it has expired, so that the critical
// record stays visible for a while on backends that delete it), else 0.
func lease(in Instance, now time.Time) time.Duration {
	if in.Source != SourceTTL {
		return 0
	}
	if left := in.ExpiresAt.Sub(now); left > 0 {
		return left
	}
	return in.TTL
}

// Register validates in, fills its ID, Source, Health, UpdatedAt and
// ExpiresAt, stores it (replacing an instance with the same service and
// id) and returns it. Invalid input returns an error matching ErrInvalid
// that lists every problem.
func (s *Service) Register(ctx context.Context, in Instance) (Instance, error) {
	in, err := normalize(in)
	if err != nil {
		return Instance{}, err
	}
	now := s.now()
	in.UpdatedAt, in.ExpiresAt, in.CriticalSince = now, time.Time{}, time.Time{}
	switch in.Source {
	case SourceTTL:
		in.Health, in.Output = Passing, ""
		in.ExpiresAt = now.Add(in.TTL)
	case SourceCheck:
		in.Health, in.Output = Critical, "waiting for the first check"
		in.CriticalSince = now
	default:
		if in.Health == Critical {
			in.CriticalSince = now
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.backend.Put(ctx, in, lease(in, now)); err != nil {
		return Instance{}, fmt.Errorf("registering %s: %w", in.Key(), err)
	}
	s.logger.Debug("registered", "instance", in.Key(), "source", in.Source)
	return in, nil
}

// Deregister removes an instance; ErrNotFound if there is none.
func (s *Service) Deregister(ctx context.Context, service, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.backend.Get(ctx, service, id); err != nil {
		return fmt.Errorf("deregistering %s/%s: %w", service, id, err)
	}
	if err := s.backend.Delete(ctx, service, id); err != nil {
		return fmt.Errorf("deregistering %s/%s: %w", service, id, err)
	}
	return nil
}

// Renew marks a TTL instance passing for another TTL. It returns
// ErrNotFound if the instance is gone (the etcd backend deletes expired
// ones: register again) and ErrInvalid for other sources.
func (s *Service) Renew(ctx context.Context, service, id string) (Instance, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, err := s.backend.Get(ctx, service, id)
	if err != nil {
		return Instance{}, fmt.Errorf("renewing %s/%s: %w", service, id, err)
	}
	if in.Source != SourceTTL {
		return Instance{}, fmt.Errorf("renewing %s: %w: a %s instance has no TTL", in.Key(), ErrInvalid, in.Source)
	}
	now := s.now()
	setHealth(&in, Passing, "", now)
	in.UpdatedAt = now
	in.ExpiresAt = now.Add(in.TTL)
	if err := s.backend.Put(ctx, in, in.TTL); err != nil {
		return Instance{}, fmt.Errorf("renewing %s: %w", in.Key(), err)
	}
	return in, nil
}

// SetHealth sets an instance's health and output; the hub uses it for
// agent instances, whose health the agent reports.
func (s *Service) SetHealth(ctx context.Context, service, id string, h Health, output string) error {
	if !validHealth(h) {
		return fmt.Errorf("%w: health %q: must be passing, warning or critical", ErrInvalid, h)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	in, err := s.backend.Get(ctx, service, id)
	if err != nil {
		return fmt.Errorf("setting health of %s/%s: %w", service, id, err)
	}
	now := s.now()
	if !setHealth(&in, h, output, now) {
		return nil
	}
	if err := s.backend.Put(ctx, in, lease(in, now)); err != nil {
		return fmt.Errorf("setting health of %s: %w", in.Key(), err)
	}
	return nil
}

// List returns every instance of service ("" for every service) in any
// health, sorted by service then id.
func (s *Service) List(ctx context.Context, service string) ([]Instance, error) {
	if service != "" {
		if err := validService(service); err != nil {
			return nil, err
		}
	}
	out, err := s.backend.List(ctx, service)
	if err != nil {
		return nil, fmt.Errorf("listing %q: %w", service, err)
	}
	return out, nil
}

// Resolve returns service's passing instances (and warning ones with
// opts.IncludeWarning) that carry every tag of opts.Tags, sorted by id. A
// TTL instance past its ExpiresAt is not returned even before the sweeper
// marks it critical.
func (s *Service) Resolve(ctx context.Context, service string, opts ResolveOptions) ([]Instance, error) {
	if err := validService(service); err != nil {
		return nil, err
	}
	all, err := s.backend.List(ctx, service)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", service, err)
	}
	return resolve(all, opts, s.now()), nil
}

func resolve(all []Instance, opts ResolveOptions, now time.Time) []Instance {
	out := []Instance{}
	for _, in := range all {
		switch {
		case in.Source == SourceTTL && !in.ExpiresAt.After(now):
			continue
		case in.Health == Passing, in.Health == Warning && opts.IncludeWarning:
		default:
			continue
		}
		if !hasTags(in.Tags, opts.Tags) {
			continue
		}
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b Instance) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func hasTags(have, want []string) bool {
	for _, t := range want {
		if !slices.Contains(have, t) {
			return false
		}
	}
	return true
}

// sameSet reports whether two resolved snapshots hold the same instances
// with the same addresses, tags, meta and health; renewals and check
// outputs alone do not make a new snapshot.
func sameSet(a, b []Instance) bool {
	return slices.EqualFunc(a, b, func(x, y Instance) bool {
		return x.ID == y.ID && x.Address == y.Address && x.Port == y.Port &&
			x.Health == y.Health && x.Device == y.Device &&
			slices.Equal(x.Tags, y.Tags) && maps.Equal(x.Meta, y.Meta)
	})
}

// Watch sends service's resolved instances at once, then again after
// every change that alters them. A slow reader gets the latest snapshot,
// not every one in between. The channel is closed when ctx ends or the
// backend's watch fails.
func (s *Service) Watch(ctx context.Context, service string, opts ResolveOptions) (<-chan []Instance, error) {
	if err := validService(service); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	events, err := s.backend.Watch(wctx, service)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("watching %s: %w", service, err)
	}
	first, err := s.Resolve(wctx, service, opts)
	if err != nil {
		cancel()
		for range events {
		}
		return nil, err
	}
	out := make(chan []Instance)
	go func() {
		defer close(out)
		defer cancel()
		// last is the snapshot the reader has (sent); pending the one to
		// send while send is out.
		var last []Instance
		sent, pending, send := false, first, out
		for {
			select {
			case <-wctx.Done():
				return
			case send <- pending:
				last, sent, send = pending, true, nil
			case _, ok := <-events:
				if !ok {
					return
				}
				// One Resolve (a backend List) covers every change
				// already waiting: a burst of writes costs one read.
				if !drain(events) {
					return
				}
				cur, err := s.Resolve(wctx, service, opts)
				if err != nil {
					if wctx.Err() == nil {
						s.logger.Warn("watch: resolving failed", "service", service, "err", err)
					}
					return
				}
				pending, send = cur, out
				if sent && sameSet(cur, last) {
					send = nil
				}
			}
		}
	}()
	return out, nil
}

// drain takes the events that are ready without blocking; it reports
// false if events is closed.
func drain(events <-chan Event) bool {
	for {
		select {
		case _, ok := <-events:
			if !ok {
				return false
			}
		default:
			return true
		}
	}
}
