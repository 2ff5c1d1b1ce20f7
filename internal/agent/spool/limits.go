package spool

import (
	"errors"
	"fmt"
	"time"
)

// Limits are the options of a spool that may change while it runs.
type Limits struct {
	// MaxBytes bounds the stored point data, as Options.MaxBytes.
	MaxBytes int64
	// MaxAge drops points stored longer ago than this; 0 keeps them.
	MaxAge time.Duration
	// Overflow is the policy when MaxBytes is reached.
	Overflow Overflow
}

// Limits returns the limits in force.
func (s *Spool) Limits() Limits { return *s.lim() }

func (s *Spool) lim() *Limits { return s.limits.Load() }

// SetLimits changes MaxBytes, MaxAge and Overflow of a spool that may be
// running. The next commit enforces them: a smaller MaxBytes with
// OverflowDropOldest drops the oldest points then; a shorter MaxAge expires
// points at the next expiry tick (at most a second away). It is safe to
// call concurrently with every other method.
func (s *Spool) SetLimits(l Limits) error {
	var errs []error
	if l.MaxBytes < recordOverhead {
		errs = append(errs, fmt.Errorf("max bytes must be at least %d, got %d", recordOverhead, l.MaxBytes))
	}
	if l.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("max age must not be negative, got %s", l.MaxAge))
	}
	switch l.Overflow {
	case OverflowDropOldest, OverflowBlock:
	default:
		errs = append(errs, fmt.Errorf("overflow must be %s or %s, got %q", OverflowDropOldest, OverflowBlock, l.Overflow))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("setting spool limits: %w", err)
	}
	s.limits.Store(&l)
	// Appends waiting for room under OverflowBlock may fit now.
	notify(s.wake)
	return nil
}
