package slots

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// healthPoll is how often AwaitCommit asks whether the trial is healthy.
const healthPoll = 50 * time.Millisecond

// AwaitCommit runs in a trial (l.Trial) next to the agent: it commits the
// trial as soon as healthy reports true, and rolls it back once the commit
// window has passed without that, returning ErrWindowExpired; the caller
// then stops the agent and exits with TrialExpiredExitCode, and the next
// start runs the previous version. The window ends at l.Deadline, but
// never later than l.Window from now, so that a clock set back cannot
// stretch it. For a process that is not a trial it returns nil at once.
// It returns ctx.Err() when ctx ends first.
//
// healthy is the self-check; for the agent: connected to the hub and its
// online status acknowledged by the broker. It must be cheap and safe to
// call from another goroutine.
func AwaitCommit(ctx context.Context, dataDir string, l Launched, healthy func() bool) error {
	if !l.Trial {
		return nil
	}
	window := l.Window
	if window <= 0 {
		window = DefaultWindow
	}
	left := window
	if !l.Deadline.IsZero() {
		left = min(max(time.Until(l.Deadline), 0), window)
	}
	timer := time.NewTimer(left)
	defer timer.Stop()
	tick := time.NewTicker(healthPoll)
	defer tick.Stop()
	for {
		if healthy() {
			if err := Commit(dataDir); err != nil {
				return fmt.Errorf("committing update trial: %w", err)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			err := Rollback(dataDir, ReasonWindowExpired)
			if err != nil && !errors.Is(err, ErrNoTrial) {
				// The launcher rolls back by the deadline or the start count.
				return fmt.Errorf("%w (recording the rollback failed: %w)", ErrWindowExpired, err)
			}
			return ErrWindowExpired
		case <-tick.C:
		}
	}
}
