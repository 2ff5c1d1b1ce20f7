package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/outpost-edge/outpost/protocol"
)

// ServiceInstance is one registered instance of a service, as devices
// see it at GET /api/v1/device/services/{name}.
type ServiceInstance = protocol.ServiceInstance

// ServiceResolver finds the instances of a service for devices. Resolve
// returns the instances of service that carry every one of tags (none:
// all instances); an unknown service has no instances, which is not an
// error. It is called from many requests at once.
type ServiceResolver interface {
	Resolve(ctx context.Context, service string, tags []string) ([]ServiceInstance, error)
}

// registerDeviceServiceRoutes mounts the device-facing service lookup
// when Options.Services is set. Devices authenticate with their id and
// MQTT password (HTTP Basic): the agent's local API asks on behalf of
// the device's apps.
func (a *api) registerDeviceServiceRoutes(v1 *gin.RouterGroup) {
	if a.Services == nil {
		return
	}
	v1.GET(strings.TrimPrefix(protocol.DeviceServicesPath, "/api/v1")+":name", a.requireDevice, a.deviceServices)
}

// requireDevice accepts HTTP Basic with a device's id and MQTT password.
func (a *api) requireDevice(c *gin.Context) {
	id, pw, ok := c.Request.BasicAuth()
	if da, isDA := a.Devices.(deviceAuthenticator); ok && isDA && da.Authenticate(c.Request.Context(), id, pw) {
		c.Next()
		return
	}
	c.Header("WWW-Authenticate", `Basic realm="outpost"`)
	fail(c, http.StatusUnauthorized, "unauthorized", "device credentials (HTTP Basic: device id and MQTT password) required")
}

func (a *api) deviceServices(c *gin.Context) {
	name := c.Param("name")
	tags := c.QueryArray("tag")
	if err := protocol.CheckServiceWord("service name", name); err != nil {
		fail(c, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	for _, t := range tags {
		if err := protocol.CheckServiceWord("tag", t); err != nil {
			fail(c, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
	}
	slices.Sort(tags)
	tags = slices.Compact(tags)
	insts, err := a.Services.Resolve(c.Request.Context(), name, tags)
	if err != nil {
		a.failErr(c, fmt.Errorf("resolving service %s: %w", name, err))
		return
	}
	if insts == nil {
		insts = []ServiceInstance{}
	}
	c.JSON(http.StatusOK, protocol.ServiceLookup{Service: name, Instances: insts})
}
