package registry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Run sweeps the registry every SweepInterval until ctx ends: TTL
// instances past ExpiresAt turn critical ("TTL expired"), due http/tcp
// checks run (each in its own goroutine, at its interval), and TTL and
// check instances critical for DeregisterCriticalAfter are deleted. It
// returns nil once ctx ended and every check it started has returned.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	// next and running are only used by this goroutine and the check
	// goroutines' completion, guarded by mu.
	var mu sync.Mutex
	next := map[string]time.Time{}
	running := map[string]bool{}

	ticker := time.NewTicker(s.sweep)
	defer ticker.Stop()
	for {
		all, err := s.backend.List(ctx, "")
		if err != nil && ctx.Err() == nil {
			s.logger.Warn("sweep: listing instances failed", "err", err)
		}
		now := s.now()
		seen := make(map[string]bool, len(all))
		for _, in := range all {
			key := in.Key()
			seen[key] = true
			switch in.Source {
			case SourceTTL:
				if in.Health != Critical && !in.ExpiresAt.After(now) {
					s.update(ctx, in, func(cur *Instance, now time.Time) bool {
						return cur.Source == SourceTTL && !cur.ExpiresAt.After(now) && setHealth(cur, Critical, "TTL expired", now)
					})
				}
			case SourceCheck:
				if in.Check == nil || in.Check.Interval <= 0 {
					break // not written by Register; nothing to run
				}
				mu.Lock()
				due := !running[key] && !next[key].After(now)
				if due {
					running[key] = true
					next[key] = now.Add(in.Check.Interval)
				}
				mu.Unlock()
				if due {
					wg.Add(1)
					go func() {
						defer wg.Done()
						h, output := s.runCheck(ctx, in)
						if ctx.Err() == nil {
							s.update(ctx, in, func(cur *Instance, now time.Time) bool {
								// Only the registration that was checked.
								return cur.Source == SourceCheck && cur.Address == in.Address && cur.Port == in.Port &&
									setHealth(cur, h, output, now)
							})
						}
						mu.Lock()
						delete(running, key)
						mu.Unlock()
					}()
				}
			}
			if s.deregAge > 0 && in.Source != SourceAgent && in.Health == Critical &&
				!in.CriticalSince.IsZero() && now.Sub(in.CriticalSince) >= s.deregAge {
				s.deregisterCritical(ctx, in, now)
			}
		}
		mu.Lock()
		for key := range next {
			if !seen[key] && !running[key] {
				delete(next, key)
			}
		}
		mu.Unlock()

		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// update re-reads in, applies change and stores the result if change
// reports a change; in gone meanwhile is not an error.
func (s *Service) update(ctx context.Context, in Instance, change func(cur *Instance, now time.Time) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, err := s.backend.Get(ctx, in.Service, in.ID)
	if errors.Is(err, ErrNotFound) {
		return
	}
	if err != nil {
		if ctx.Err() == nil {
			s.logger.Warn("sweep: reading instance failed", "instance", in.Key(), "err", err)
		}
		return
	}
	now := s.now()
	if !change(&cur, now) {
		return
	}
	if err := s.backend.Put(ctx, cur, lease(cur, now)); err != nil {
		if ctx.Err() == nil {
			s.logger.Warn("sweep: storing instance failed", "instance", in.Key(), "err", err)
		}
		return
	}
	s.logger.Debug("health changed", "instance", cur.Key(), "health", cur.Health, "output", cur.Output)
}

// deregisterCritical deletes in if it is still critical since long enough.
func (s *Service) deregisterCritical(ctx context.Context, in Instance, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, err := s.backend.Get(ctx, in.Service, in.ID)
	if err != nil || cur.Health != Critical || cur.CriticalSince.IsZero() || now.Sub(cur.CriticalSince) < s.deregAge {
		return
	}
	if err := s.backend.Delete(ctx, in.Service, in.ID); err != nil {
		if ctx.Err() == nil {
			s.logger.Warn("sweep: deregistering critical instance failed", "instance", in.Key(), "err", err)
		}
		return
	}
	s.logger.Info("deregistered critical instance", "instance", in.Key(), "critical_since", cur.CriticalSince)
}

// runCheck runs in's check once and returns the health and output.
func (s *Service) runCheck(ctx context.Context, in Instance) (Health, string) {
	c := in.Check
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	hostport := net.JoinHostPort(in.Address, strconv.Itoa(in.Port))
	switch c.Type {
	case "http":
		url := "http://" + hostport + c.Path
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return Critical, fmt.Sprintf("HTTP GET %s: %v", url, err)
		}
		resp, err := s.client.Do(req)
		if err != nil {
			return Critical, fmt.Sprintf("HTTP GET %s: %v", url, err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 200 && resp.StatusCode < 400 {
			return Passing, fmt.Sprintf("HTTP GET %s: %s", url, resp.Status)
		}
		return Critical, fmt.Sprintf("HTTP GET %s: %s", url, resp.Status)
	case "tcp":
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", hostport)
		if err != nil {
			return Critical, fmt.Sprintf("TCP connect %s: %v", hostport, err)
		}
		conn.Close()
		return Passing, fmt.Sprintf("TCP connect %s: success", hostport)
	}
	return Critical, fmt.Sprintf("unknown check type %q", c.Type)
}
