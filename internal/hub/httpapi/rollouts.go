package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/outpost-edge/outpost/internal/hub/rollouts"
)

// Rollouts is the rollout service as the API uses it.
type Rollouts interface {
	Create(ctx context.Context, spec rollouts.Spec) (rollouts.Rollout, error)
	Get(ctx context.Context, id string) (rollouts.Rollout, error)
	List(ctx context.Context) ([]rollouts.Rollout, error)
	Waves(ctx context.Context, r rollouts.Rollout) ([]rollouts.WaveState, error)
	Pause(ctx context.Context, id, reason string) (rollouts.Rollout, error)
	Resume(ctx context.Context, id string) (rollouts.Rollout, error)
	Abort(ctx context.Context, id, reason string) (rollouts.Rollout, error)
}

func (a *api) registerRolloutRoutes(authed *gin.RouterGroup) {
	authed.GET("/rollouts", a.listRollouts)
	authed.POST("/rollouts", a.createRollout)
	authed.GET("/rollouts/:id", a.getRollout)
	authed.POST("/rollouts/:id/pause", a.rolloutAction)
	authed.POST("/rollouts/:id/resume", a.rolloutAction)
	authed.POST("/rollouts/:id/abort", a.rolloutAction)
}

// rolloutRequest is the body of POST /rollouts. Durations are Go duration
// strings; the threshold is a fraction (0.95) or a percentage ("95%").
type rolloutRequest struct {
	ID                string            `json:"id"`
	Artifact          string            `json:"artifact"`
	Selector          map[string]string `json:"selector"`
	Waves             []string          `json:"waves"`
	SuccessThreshold  any               `json:"success_threshold"`
	Soak              *string           `json:"soak"`
	QueuedTimeout     string            `json:"queued_timeout"`
	InProgressTimeout string            `json:"in_progress_timeout"`
}

func (req rolloutRequest) spec() (rollouts.Spec, error) {
	var errs []error
	sp := rollouts.Spec{ID: req.ID, Selector: req.Selector, Waves: req.Waves, Soak: rollouts.DefaultSoak}
	name, version, ok := strings.Cut(req.Artifact, "@")
	if !ok || name == "" || version == "" {
		errs = append(errs, fmt.Errorf("artifact %q: want NAME@VERSION, e.g. outpost-agent@1.4.0", req.Artifact))
	}
	sp.Artifact = rollouts.Artifact{Name: name, Version: version}
	if sp.ID == "" {
		sp.ID = rolloutID(name, version)
	}
	var err error
	if sp.SuccessThreshold, err = parseThreshold(req.SuccessThreshold); err != nil {
		errs = append(errs, err)
	}
	for _, d := range []struct {
		name string
		raw  *string
		dst  *time.Duration
	}{{"soak", req.Soak, &sp.Soak}, {"queued_timeout", &req.QueuedTimeout, &sp.QueuedTimeout}, {"in_progress_timeout", &req.InProgressTimeout, &sp.InProgressTimeout}} {
		if d.raw == nil || *d.raw == "" {
			continue
		}
		v, err := time.ParseDuration(*d.raw)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q: want a duration such as 5m", d.name, *d.raw))
			continue
		}
		*d.dst = v
	}
	return sp, errors.Join(errs...)
}

// rolloutID names a rollout after its artifact: outpost-agent-1_4_0-3f9a.
func rolloutID(name, version string) string {
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	clean := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
				return r
			}
			return '_'
		}, s)
	}
	id := clean(name) + "-" + clean(version)
	if len(id) > 42 {
		id = id[:42]
	}
	return id + "-" + hex.EncodeToString(b)
}

func parseThreshold(v any) (float64, error) {
	switch t := v.(type) {
	case nil:
		return 0, nil // the default
	case float64:
		return t, nil
	case string:
		s := strings.TrimSpace(t)
		if p, ok := strings.CutSuffix(s, "%"); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
			if err == nil {
				return f / 100, nil
			}
		} else if f, err := strconv.ParseFloat(s, 64); err == nil {
			return f, nil
		}
	}
	return 0, fmt.Errorf("success_threshold %v: want a fraction such as 0.95 or a percentage such as \"95%%\"", v)
}

func (a *api) rolloutFail(c *gin.Context, err error) {
	switch {
	case errors.Is(err, rollouts.ErrInvalid):
		fail(c, http.StatusBadRequest, "bad_request", err.Error())
	case errors.Is(err, rollouts.ErrNotArtifact):
		fail(c, http.StatusBadRequest, "unknown_artifact", err.Error()+"; publish it first with outpost artifacts publish")
	case errors.Is(err, rollouts.ErrNoDevices):
		fail(c, http.StatusBadRequest, "no_devices", err.Error())
	case errors.Is(err, rollouts.ErrExists):
		fail(c, http.StatusConflict, "conflict", err.Error())
	case errors.Is(err, rollouts.ErrNotFound):
		fail(c, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, rollouts.ErrFinal):
		fail(c, http.StatusConflict, "rollout_ended", err.Error())
	case errors.Is(err, rollouts.ErrState):
		fail(c, http.StatusConflict, "conflict", err.Error())
	default:
		a.failErr(c, err)
	}
}

func (a *api) createRollout(c *gin.Context) {
	var req rolloutRequest
	if !bind(c, &req) {
		return
	}
	sp, err := req.spec()
	if err != nil {
		fail(c, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	r, err := a.Rollouts.Create(c.Request.Context(), sp)
	if err != nil {
		a.rolloutFail(c, err)
		return
	}
	a.writeRollout(c, http.StatusCreated, r)
}

// rolloutSummary is a rollout without its device list.
type rolloutSummary struct {
	ID               string               `json:"id"`
	Artifact         rollouts.Artifact    `json:"artifact"`
	Selector         map[string]string    `json:"selector,omitempty"`
	Status           rollouts.Status      `json:"status"`
	Reason           string               `json:"reason,omitempty"`
	Devices          int                  `json:"devices"`
	Waves            []string             `json:"waves"`
	WaveBounds       []int                `json:"wave_bounds"`
	Wave             int                  `json:"wave"` // 1-based
	SuccessThreshold float64              `json:"success_threshold"`
	Soak             string               `json:"soak"`
	SoakUntil        *time.Time           `json:"soak_until,omitempty"`
	CreatedAt        time.Time            `json:"created_at"`
	UpdatedAt        time.Time            `json:"updated_at"`
	WaveStates       []rollouts.WaveState `json:"wave_states,omitempty"`
}

func summarize(r rollouts.Rollout) rolloutSummary {
	s := rolloutSummary{ID: r.ID, Artifact: r.Artifact, Selector: r.Selector, Status: r.Status, Reason: r.Reason,
		Devices: len(r.Devices), Waves: r.Waves, WaveBounds: r.Bounds, Wave: r.Wave + 1,
		SuccessThreshold: r.SuccessThreshold, Soak: r.Soak.String(), CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
	if !r.SoakUntil.IsZero() {
		t := r.SoakUntil
		s.SoakUntil = &t
	}
	return s
}

// writeRollout answers with the rollout and the state of its waves.
func (a *api) writeRollout(c *gin.Context, status int, r rollouts.Rollout) {
	s := summarize(r)
	waves, err := a.Rollouts.Waves(c.Request.Context(), r)
	if err != nil {
		a.rolloutFail(c, err)
		return
	}
	s.WaveStates = waves
	c.JSON(status, s)
}

func (a *api) listRollouts(c *gin.Context) {
	rs, err := a.Rollouts.List(c.Request.Context())
	if err != nil {
		a.rolloutFail(c, err)
		return
	}
	out := make([]rolloutSummary, len(rs))
	for i, r := range rs {
		out[i] = summarize(r)
	}
	c.JSON(http.StatusOK, gin.H{"rollouts": out})
}

func (a *api) getRollout(c *gin.Context) {
	r, err := a.Rollouts.Get(c.Request.Context(), c.Param("id"))
	if err != nil {
		a.rolloutFail(c, err)
		return
	}
	a.writeRollout(c, http.StatusOK, r)
}

func (a *api) rolloutAction(c *gin.Context) {
	var req struct {
		Reason string `json:"reason"`
	}
	if c.Request.ContentLength != 0 && !bind(c, &req) {
		return
	}
	if len(req.Reason) > 500 {
		fail(c, http.StatusBadRequest, "bad_request", "reason: at most 500 characters")
		return
	}
	ctx, id := c.Request.Context(), c.Param("id")
	var (
		r   rollouts.Rollout
		err error
	)
	switch action := c.FullPath()[strings.LastIndexByte(c.FullPath(), '/')+1:]; action {
	case "pause":
		r, err = a.Rollouts.Pause(ctx, id, req.Reason)
	case "resume":
		r, err = a.Rollouts.Resume(ctx, id)
	default:
		r, err = a.Rollouts.Abort(ctx, id, req.Reason)
	}
	if err != nil {
		a.rolloutFail(c, err)
		return
	}
	a.writeRollout(c, http.StatusOK, r)
}
