package httpapi

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/outpost-edge/outpost/internal/hub/store"
)

// LabelSetter changes a device's labels. The device service implements it;
// the API finds it on Options.Devices by type assertion, so that Devices
// implementations that cannot change labels need not implement it.
type LabelSetter interface {
	// SetLabels applies a merge patch (a value sets a label, nil removes
	// it) and returns the device afterwards; device.ErrInvalid lists every
	// problem of the result, store.ErrNotFound means no such device.
	SetLabels(ctx context.Context, id string, patch map[string]*string) (store.Device, error)
}

// patchDeviceRequest is the body of PATCH /api/v1/devices/{id}.
type patchDeviceRequest struct {
	// Labels is a JSON merge patch of the device's labels: "k":"v" sets,
	// "k":null removes, keys not named stay.
	Labels map[string]*string `json:"labels"`
}

// patchDevice serves PATCH /api/v1/devices/{id}: it changes the device's
// labels and answers with the device as GET /api/v1/devices/{id} does.
// Label changes move the device in and out of label-selected deployments
// and rollouts.
func (a *api) patchDevice(c *gin.Context) {
	setter, ok := a.Devices.(LabelSetter)
	if !ok {
		fail(c, http.StatusNotImplemented, "not_implemented", "this hub cannot change device labels")
		return
	}
	var req patchDeviceRequest
	if !bind(c, &req) {
		return
	}
	if req.Labels == nil {
		fail(c, http.StatusBadRequest, "bad_request", `"labels" is required: an object of label values to set, or null to remove`)
		return
	}
	d, err := setter.SetLabels(c.Request.Context(), c.Param("id"), req.Labels)
	if err != nil {
		a.failErr(c, err)
		return
	}
	c.JSON(http.StatusOK, toDeviceJSON(d))
}
