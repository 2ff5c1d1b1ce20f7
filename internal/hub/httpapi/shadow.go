package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/outpost-edge/outpost/internal/hub/shadow"
	"github.com/outpost-edge/outpost/protocol"
)

// Shadows is the shadow service as the API uses it.
type Shadows interface {
	Get(ctx context.Context, deviceID, name string) (protocol.ShadowDocument, error)
	PatchDesired(ctx context.Context, deviceID, name string, patch []byte, version *int64) (protocol.ShadowDocument, error)
	Delete(ctx context.Context, deviceID, name string) (int64, error)
}

func (a *api) registerShadowRoutes(authed *gin.RouterGroup) {
	authed.GET("/devices/:id/shadow", a.getShadow)
	authed.PATCH("/devices/:id/shadow", a.patchShadow)
	authed.DELETE("/devices/:id/shadow", a.deleteShadow)
}

// shadowFail answers a refused or failed shadow request.
func (a *api) shadowFail(c *gin.Context, err error) {
	var r *shadow.Rejection
	if !errors.As(err, &r) {
		a.failErr(c, err)
		return
	}
	switch {
	case errors.Is(err, shadow.ErrNotFound):
		fail(c, http.StatusNotFound, "not_found", r.Message)
	case errors.Is(err, shadow.ErrVersionConflict):
		fail(c, http.StatusConflict, "conflict", r.Message+": the shadow has another version than If-Match names; get it again")
	case errors.Is(err, shadow.ErrTooLarge):
		fail(c, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("%s (request at most %d bytes, stored desired and reported state at most %d bytes)",
			r.Message, protocol.MaxShadowRequestBytes, protocol.MaxShadowStateBytes))
	default:
		fail(c, http.StatusBadRequest, "bad_request", r.Message)
	}
}

func writeShadow(c *gin.Context, doc protocol.ShadowDocument) {
	c.Header("ETag", strconv.Quote(strconv.FormatInt(doc.Version, 10)))
	c.JSON(http.StatusOK, doc)
}

func (a *api) getShadow(c *gin.Context) {
	doc, err := a.Shadows.Get(c.Request.Context(), c.Param("id"), c.Query("name"))
	if err != nil {
		a.shadowFail(c, err)
		return
	}
	writeShadow(c, doc)
}

// patchShadow merges the body, a JSON merge patch, into the desired state.
func (a *api) patchShadow(c *gin.Context) {
	version, err := parseIfMatch(c.GetHeader("If-Match"))
	if err != nil {
		fail(c, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	body, err := io.ReadAll(io.LimitReader(c.Request.Body, protocol.MaxShadowRequestBytes+1))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig) || len(body) > protocol.MaxShadowRequestBytes:
		fail(c, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body over %d bytes", protocol.MaxShadowRequestBytes))
		return
	case err != nil:
		fail(c, http.StatusBadRequest, "bad_request", "reading request body: "+err.Error())
		return
	case len(strings.TrimSpace(string(body))) == 0:
		fail(c, http.StatusBadRequest, "bad_request", `request body is empty; expected a JSON object such as {"key": "value"}`)
		return
	}
	doc, err := a.Shadows.PatchDesired(c.Request.Context(), c.Param("id"), c.Query("name"), body, version)
	if err != nil {
		a.shadowFail(c, err)
		return
	}
	writeShadow(c, doc)
}

func (a *api) deleteShadow(c *gin.Context) {
	if _, err := a.Shadows.Delete(c.Request.Context(), c.Param("id"), c.Query("name")); err != nil {
		a.shadowFail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// parseIfMatch reads an If-Match header naming a shadow version: 5, "5" or
// W/"5"; empty or * means any version.
func parseIfMatch(h string) (*int64, error) {
	h = strings.TrimSpace(h)
	if h == "" || h == "*" {
		return nil, nil
	}
	s := strings.TrimPrefix(h, "W/")
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return nil, fmt.Errorf("If-Match %q: want a shadow version such as 5 or \"5\"", h)
	}
	return &v, nil
}
