package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/outpost-edge/outpost/internal/hub/ota"
)

// OTA is the TUF repository service as the API uses it.
type OTA interface {
	OnlineKeys(rotate string) ([]ota.OnlineKey, error)
	PutRoot(data []byte) (int64, error)
	Status() (ota.Status, error)
	Publish(sp ota.Spec, body io.Reader) (ota.Artifact, bool, error)
	PublishDelta(sp ota.Spec, from string, body io.Reader) (full, delta ota.Artifact, created bool, err error)
	Artifacts(name string) ([]ota.Artifact, error)
	RootJSON() ([]byte, bool)
	OpenMetadata(name string) (*os.File, error)
	OpenTarget(p string) (*os.File, error)
	MaxArtifactBytes() int64
}

// deviceAuthenticator is implemented by the device service; the TUF
// endpoints accept a device's MQTT credentials when Devices has it.
type deviceAuthenticator interface {
	Authenticate(ctx context.Context, id, password string) bool
}

// pathArtifacts is exempt from MaxBodyBytes: artifacts have their own limit.
const pathArtifacts = "/api/v1/artifacts"

func (a *api) registerOTARoutes(r *gin.Engine, authed *gin.RouterGroup) {
	tuf := r.Group("/tuf", a.requireDeviceOrAdmin)
	tuf.GET("/metadata/:file", a.tufMetadata)
	tuf.HEAD("/metadata/:file", a.tufMetadata)
	tuf.GET("/targets/*path", a.tufTarget)
	tuf.HEAD("/targets/*path", a.tufTarget)
	authed.POST("/tuf/online-keys", a.onlineKeys)
	authed.PUT("/tuf/root", a.putRoot)
	authed.GET("/tuf/status", a.tufStatus)
	authed.POST("/artifacts", a.publishArtifact)
	authed.GET("/artifacts", a.listArtifacts)
}

// otaFail maps an ota error to a status and stable code.
func (a *api) otaFail(c *gin.Context, err error) {
	var tooBig *http.MaxBytesError
	switch {
	case errors.Is(err, ota.ErrNotInitialised):
		fail(c, http.StatusConflict, "keys_not_initialised", err.Error())
	case errors.Is(err, ota.ErrInvalid):
		fail(c, http.StatusBadRequest, "bad_request", err.Error())
	case errors.Is(err, ota.ErrRootRejected):
		fail(c, http.StatusBadRequest, "root_rejected", err.Error())
	case errors.Is(err, ota.ErrRootVersion):
		fail(c, http.StatusConflict, "root_version", err.Error())
	case errors.Is(err, ota.ErrConflict):
		fail(c, http.StatusConflict, "conflict", err.Error())
	case errors.Is(err, ota.ErrTooLarge), errors.As(err, &tooBig):
		fail(c, http.StatusRequestEntityTooLarge, "too_large", err.Error())
	case errors.Is(err, ota.ErrDeltaBase):
		fail(c, http.StatusNotFound, "delta_base_not_found", err.Error())
	case errors.Is(err, ota.ErrNotFound):
		fail(c, http.StatusNotFound, "not_found", "no such file")
	default:
		a.failErr(c, err)
	}
}

// requireDeviceOrAdmin accepts HTTP Basic with a device's id and MQTT
// password, or an admin bearer token.
func (a *api) requireDeviceOrAdmin(c *gin.Context) {
	if id, pw, ok := c.Request.BasicAuth(); ok {
		if da, ok := a.Devices.(deviceAuthenticator); ok && da.Authenticate(c.Request.Context(), id, pw) {
			c.Next()
			return
		}
		c.Header("WWW-Authenticate", `Basic realm="outpost"`)
		fail(c, http.StatusUnauthorized, "unauthorized", "invalid device credentials")
		return
	}
	if tok, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer "); ok && tok != "" {
		a.requireAuth(c)
		return
	}
	c.Header("WWW-Authenticate", `Basic realm="outpost"`)
	fail(c, http.StatusUnauthorized, "unauthorized", "device credentials (HTTP Basic) or an API token required")
}

func (a *api) tufMetadata(c *gin.Context) {
	f, err := a.OTA.OpenMetadata(c.Param("file"))
	if err != nil {
		a.otaFail(c, err)
		return
	}
	defer f.Close()
	a.serveFile(c, f, "application/json")
}

func (a *api) tufTarget(c *gin.Context) {
	p := strings.TrimPrefix(c.Param("path"), "/")
	f, err := a.OTA.OpenTarget(p)
	if err != nil {
		a.otaFail(c, err)
		return
	}
	defer f.Close()
	a.serveFile(c, f, "application/octet-stream")
}

// serveFile answers with f's content; Range and conditional requests work.
func (a *api) serveFile(c *gin.Context, f *os.File, contentType string) {
	fi, err := f.Stat()
	if err != nil {
		a.failErr(c, fmt.Errorf("stat %s: %w", f.Name(), err))
		return
	}
	c.Header("Content-Type", contentType)
	c.Header("Cache-Control", "no-cache")
	http.ServeContent(c.Writer, c.Request, "", fi.ModTime(), f)
}

func (a *api) onlineKeys(c *gin.Context) {
	keys, err := a.OTA.OnlineKeys(c.Query("rotate"))
	if err != nil {
		a.otaFail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"keys": keys})
}

func (a *api) putRoot(c *gin.Context) {
	data, err := io.ReadAll(io.LimitReader(c.Request.Body, ota.MaxRootBytes+1))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig) || len(data) > ota.MaxRootBytes:
		fail(c, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("root.json over %d bytes", ota.MaxRootBytes))
		return
	case err != nil:
		fail(c, http.StatusBadRequest, "bad_request", "reading request body: "+err.Error())
		return
	}
	v, err := a.OTA.PutRoot(data)
	if err != nil {
		a.otaFail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"version": v})
}

func (a *api) tufStatus(c *gin.Context) {
	st, err := a.OTA.Status()
	if err != nil {
		a.otaFail(c, err)
		return
	}
	c.JSON(http.StatusOK, st)
}

func (a *api) publishArtifact(c *gin.Context) {
	sp := ota.Spec{Name: c.Query("name"), Version: c.Query("version"), Type: c.Query("type"), Platform: ota.NormalizePlatform(c.Query("platform"))}
	if err := sp.Validate(); err != nil {
		a.otaFail(c, err)
		return
	}
	max := a.OTA.MaxArtifactBytes()
	if c.Request.ContentLength > max {
		fail(c, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("artifact of %d bytes is over the hub's limit of %d bytes", c.Request.ContentLength, max))
		return
	}
	var (
		art, delta ota.Artifact
		created    bool
		err        error
	)
	from, withDelta := c.GetQuery("delta_from")
	if withDelta {
		art, delta, created, err = a.OTA.PublishDelta(sp, from, c.Request.Body)
	} else {
		art, created, err = a.OTA.Publish(sp, c.Request.Body)
	}
	var skipped *ota.DeltaSkippedError
	if errors.As(err, &skipped) {
		status := http.StatusOK
		if created {
			status = http.StatusCreated
		}
		c.JSON(status, gin.H{"artifact": art, "created": created, "delta": nil, "delta_skipped": skipped.Reason})
		return
	}
	if err != nil {
		if errors.Is(err, ota.ErrTooLarge) {
			err = fmt.Errorf("%w (the hub's limit is %d bytes)", err, max)
		}
		a.otaFail(c, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	if withDelta {
		c.JSON(status, gin.H{"artifact": art, "created": created, "delta": delta})
		return
	}
	c.JSON(status, gin.H{"artifact": art, "created": created})
}

func (a *api) listArtifacts(c *gin.Context) {
	arts, err := a.OTA.Artifacts(c.Query("name"))
	if err != nil {
		a.otaFail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"artifacts": arts})
}
