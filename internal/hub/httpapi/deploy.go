package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/outpost-edge/outpost/internal/deployspec"
	"github.com/outpost-edge/outpost/internal/hub/deploy"
	"github.com/outpost-edge/outpost/protocol"
)

// MaxSpecBytes caps the body of POST /deployments.
const MaxSpecBytes = 256 << 10

// Deployments is the deploy service as the API uses it.
type Deployments interface {
	Apply(ctx context.Context, spec []byte) (deploy.Deployment, deploy.ApplyResult, error)
	List(ctx context.Context) ([]deploy.Status, error)
	Status(ctx context.Context, name string) (deploy.Status, error)
	Delete(ctx context.Context, name string) (int, error)
	Logs(ctx context.Context, device, service string, tail int, after uint64) (protocol.LogsResponse, error)
}

// registerDeployRoutes mounts the deployment and service log endpoints
// when the API has a deploy service.
func (a *api) registerDeployRoutes(authed *gin.RouterGroup) {
	if a.Deploy == nil {
		return
	}
	authed.POST("/deployments", a.applyDeployment)
	authed.GET("/deployments", a.listDeployments)
	authed.GET("/deployments/:name", a.getDeployment)
	authed.DELETE("/deployments/:name", a.deleteDeployment)
	authed.GET("/devices/:id/services/:service/logs", a.serviceLogs)
}

// specErrorBody is the answer to an invalid spec: the usual error object
// and every problem as "key: message".
type specErrorBody struct {
	errorBody
	Problems []string `json:"problems"`
}

func (a *api) deployFail(c *gin.Context, err error) {
	var problems deployspec.Problems
	switch {
	case errors.As(err, &problems):
		var b specErrorBody
		b.Error.Code, b.Error.Message = "invalid_spec", deployspec.ErrInvalid.Error()
		b.Problems = make([]string, len(problems))
		for i, p := range problems {
			b.Problems[i] = p.Error()
		}
		c.AbortWithStatusJSON(http.StatusBadRequest, b)
	case errors.Is(err, deployspec.ErrTooLarge):
		fail(c, http.StatusRequestEntityTooLarge, "too_large", err.Error())
	case errors.Is(err, deployspec.ErrInvalid):
		fail(c, http.StatusBadRequest, "invalid_spec", err.Error())
	case errors.Is(err, deploy.ErrUnknownArtifact):
		fail(c, http.StatusBadRequest, "unknown_artifact", err.Error())
	case errors.Is(err, deploy.ErrArtifactType):
		fail(c, http.StatusBadRequest, "wrong_artifact_type", err.Error())
	case errors.Is(err, deploy.ErrNotFound), errors.Is(err, deploy.ErrDeviceNotFound):
		fail(c, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, deploy.ErrDeviceOffline):
		fail(c, http.StatusConflict, "device_offline", err.Error())
	case errors.Is(err, deploy.ErrDeviceTimeout):
		fail(c, http.StatusGatewayTimeout, "device_timeout", err.Error())
	case errors.Is(err, deploy.ErrNoService):
		fail(c, http.StatusNotFound, "no_such_service", err.Error())
	case errors.Is(err, deploy.ErrLogsUnavailable):
		fail(c, http.StatusServiceUnavailable, "unavailable", err.Error())
	default:
		a.failErr(c, err)
	}
}

// deploymentSummary is a deployment as GET /deployments lists it.
type deploymentSummary struct {
	Name             string       `json:"name"`
	Artifact         string       `json:"artifact"`
	Revision         string       `json:"revision"`
	PreviousRevision string       `json:"previous_revision,omitempty"`
	State            deploy.State `json:"state"`
	Message          string       `json:"message,omitempty"`
	Batch            int          `json:"batch"`
	// Devices counts the devices the service was given to; Updated those
	// that report the current revision running and healthy.
	Devices   int       `json:"devices"`
	Updated   int       `json:"updated"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func summarizeDeployment(st deploy.Status) deploymentSummary {
	s := deploymentSummary{Name: st.Name, Artifact: st.Artifact(), Revision: st.Revision, State: st.State, Message: st.Message,
		Batch: st.Batch, Devices: len(st.Deployment.Devices), Updated: st.Updated, CreatedAt: st.CreatedAt, UpdatedAt: st.UpdatedAt}
	if st.Previous != nil {
		s.PreviousRevision = st.Previous.Revision
	}
	return s
}

// deploymentStatus is GET /deployments/{name}: the summary's fields but
// the device count, each device's state, and the spec.
type deploymentStatus struct {
	Name             string                `json:"name"`
	Artifact         string                `json:"artifact"`
	Revision         string                `json:"revision"`
	PreviousRevision string                `json:"previous_revision,omitempty"`
	State            deploy.State          `json:"state"`
	Message          string                `json:"message,omitempty"`
	Batch            int                   `json:"batch"`
	Updated          int                   `json:"updated"`
	CreatedAt        time.Time             `json:"created_at"`
	UpdatedAt        time.Time             `json:"updated_at"`
	Devices          []deploy.DeviceStatus `json:"devices"`
	Spec             json.RawMessage       `json:"spec"`
}

func (a *api) applyDeployment(c *gin.Context) {
	body, err := io.ReadAll(io.LimitReader(c.Request.Body, MaxSpecBytes+1))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig) || len(body) > MaxSpecBytes:
		fail(c, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("deployment spec over %d bytes", MaxSpecBytes))
		return
	case err != nil:
		fail(c, http.StatusBadRequest, "bad_request", "reading the request body: "+err.Error())
		return
	}
	ctx := c.Request.Context()
	d, result, err := a.Deploy.Apply(ctx, body)
	if err != nil {
		a.deployFail(c, err)
		return
	}
	st, err := a.Deploy.Status(ctx, d.Name)
	if err != nil {
		// The spec is applied; only the devices' reports are missing.
		a.logger.Warn("reading the status of an applied deployment", "deployment", d.Name, "err", err)
		st = deploy.Status{Deployment: d}
	}
	status := http.StatusOK
	if result == deploy.Created {
		status = http.StatusCreated
	}
	c.JSON(status, gin.H{"result": result, "deployment": summarizeDeployment(st)})
}

func (a *api) listDeployments(c *gin.Context) {
	sts, err := a.Deploy.List(c.Request.Context())
	if err != nil {
		a.deployFail(c, err)
		return
	}
	out := make([]deploymentSummary, len(sts))
	for i, st := range sts {
		out[i] = summarizeDeployment(st)
	}
	c.JSON(http.StatusOK, gin.H{"deployments": out})
}

func (a *api) getDeployment(c *gin.Context) {
	st, err := a.Deploy.Status(c.Request.Context(), c.Param("name"))
	if err != nil {
		a.deployFail(c, err)
		return
	}
	s := summarizeDeployment(st)
	c.JSON(http.StatusOK, deploymentStatus{
		Name: s.Name, Artifact: s.Artifact, Revision: s.Revision, PreviousRevision: s.PreviousRevision, State: s.State,
		Message: s.Message, Batch: s.Batch, Updated: s.Updated, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt,
		Devices: st.DeviceStates, Spec: st.Spec,
	})
}

func (a *api) deleteDeployment(c *gin.Context) {
	name := c.Param("name")
	n, err := a.Deploy.Delete(c.Request.Context(), name)
	if err != nil {
		a.deployFail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"removed": name, "devices": n})
}

func (a *api) serviceLogs(c *gin.Context) {
	var tail int
	var after uint64
	if s := c.Query("tail"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > protocol.MaxLogLines {
			fail(c, http.StatusBadRequest, "bad_request", fmt.Sprintf("tail: a whole number from 0 to %d", protocol.MaxLogLines))
			return
		}
		tail = n
	}
	if s := c.Query("after"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			fail(c, http.StatusBadRequest, "bad_request", "after: a line sequence number (0 or more)")
			return
		}
		after = n
	}
	resp, err := a.Deploy.Logs(c.Request.Context(), c.Param("id"), c.Param("service"), tail, after)
	if err != nil {
		a.deployFail(c, err)
		return
	}
	if resp.Lines == nil {
		resp.Lines = []protocol.LogLine{}
	}
	c.JSON(http.StatusOK, resp)
}
