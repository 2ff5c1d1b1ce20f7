package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"slices"

	"github.com/gin-gonic/gin"
)

// maxServiceWordLen is the longest service name or tag a device may ask for.
const maxServiceWordLen = 128

// ServiceInstance is one registered instance of a service, as devices
// see it at GET /api/v1/device/services/{name}.
type ServiceInstance struct {
	ID      string            `json:"id"`
	Address string            `json:"address"`
	Port    int               `json:"port"`
	Tags    []string          `json:"tags"`
	Meta    map[string]string `json:"meta"`
	// Health is the instance's health as the registry knows it, e.g.
	// passing, warning or critical.
	Health string `json:"health"`
}

// ServiceResolver finds the instances of a service for devices. Resolve
// returns the instances of service that carry every one of tags (none:
// all instances); an unknown service has no instances, which is not an
// error. It is called from many requests at once.
type ServiceResolver interface {
	Resolve(ctx context.Context, service string, tags []string) ([]ServiceInstance, error)
}

// deviceServicesAnswer is the body of GET /api/v1/device/services/{name}.
type deviceServicesAnswer struct {
	Service   string            `json:"service"`
	Instances []ServiceInstance `json:"instances"`
}

// registerDeviceServiceRoutes mounts the device-facing service lookup
// when Options.Services is set. Devices authenticate with their id and
// MQTT password (HTTP Basic): the agent's local API asks on behalf of
// the device's apps.
func (a *api) registerDeviceServiceRoutes(v1 *gin.RouterGroup) {
	if a.Services == nil {
		return
	}
	v1.GET("/device/services/:name", a.requireDevice, a.deviceServices)
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
	for _, w := range append([]string{name}, tags...) {
		if err := checkServiceWord(w); err != nil {
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
	c.JSON(http.StatusOK, deviceServicesAnswer{Service: name, Instances: insts})
}

// checkServiceWord accepts 1 to maxServiceWordLen bytes of ASCII letters,
// digits, '.', '_' and '-'.
func checkServiceWord(s string) error {
	if len(s) == 0 || len(s) > maxServiceWordLen {
		return fmt.Errorf("service names and tags must be 1 to %d bytes, got %q", maxServiceWordLen, s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%q has %q at byte %d; allowed are letters, digits, '.', '_' and '-'", s, c, i)
		}
	}
	return nil
}
