// Package periodic runs the hub's background steps (advancing rollouts and
// deployments, expiring jobs, re-signing update metadata) on a timer. It
// imports nothing of the hub.
package periodic

import (
	"context"
	"log/slog"
	"time"
)

// Run calls step at once and then every interval until ctx ends. A step
// that fails is logged at error level as "what" (e.g. "advancing
// rollouts") and the next one runs on time; errors after ctx ended are not
// logged. Run returns once ctx has ended and no step runs.
func Run(ctx context.Context, interval time.Duration, logger *slog.Logger, what string, step func(context.Context) error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := step(ctx); err != nil && ctx.Err() == nil {
			logger.Error(what, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
