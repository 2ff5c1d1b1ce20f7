package svcsync_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/outpost-edge/outpost/internal/deployspec"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/protocol"
)

// TestInHub runs the whole path in a hub: the REST API writes the desired
// workload, a device reports it over MQTT, and the instance shows up in
// the registry's REST API, then goes when the workload is removed.
func TestInHub(t *testing.T) {
	h := hubtest.Start(t)
	pass := h.AddDevice(t, "cam-1")
	conn, err := net.Dial("tcp", h.MQTTAddr())
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn, ClientID: "cam-1"})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "cam-1", CleanStart: true, KeepAlive: 30,
		UsernameFlag: true, Username: "cam-1", PasswordFlag: true, Password: []byte(pass)}); err != nil {
		t.Fatalf("connecting: %v", err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })

	spec, err := deployspec.Parse([]byte("name: web\nartifact: web@1.0.0\nports: [8080]\n"))
	if err != nil {
		t.Fatal(err)
	}
	h.API(t, "PATCH", "/api/v1/devices/cam-1/shadow?name="+protocol.WorkloadsShadow, map[string]any{protocol.WorkloadsKey: map[string]any{
		"web": protocol.WorkloadDesired{Revision: spec.Revision(), Spec: string(spec.Canonical())},
	}}, http.StatusOK, nil)
	report, _ := json.Marshal(map[string]any{"state": map[string]any{"reported": map[string]any{protocol.WorkloadsKey: map[string]any{
		"web": protocol.WorkloadReport{Revision: spec.Revision(), Version: "1.0.0", State: "running", Healthy: true, Address: "10.0.0.5"},
	}}}})
	if _, err := c.Publish(ctx, &paho.Publish{Topic: protocol.ShadowTopic("cam-1", protocol.WorkloadsShadow, protocol.ShadowOpUpdate, ""), QoS: 1, Payload: report}); err != nil {
		t.Fatalf("publishing the report: %v", err)
	}

	type inst struct {
		ID, Address, Health, Source, Device string
		Port                                int
	}
	var res struct{ Instances []inst }
	testutil.Eventually(t, 10*time.Second, func() error {
		h.API(t, "GET", "/api/v1/services/web", nil, http.StatusOK, &res)
		want := inst{ID: "cam-1", Address: "10.0.0.5", Health: "passing", Source: "agent", Device: "cam-1", Port: 8080}
		if len(res.Instances) != 1 || res.Instances[0] != want {
			return fmt.Errorf("instances %+v, want %+v", res.Instances, want)
		}
		return nil
	})

	h.API(t, "PATCH", "/api/v1/devices/cam-1/shadow?name="+protocol.WorkloadsShadow, map[string]any{protocol.WorkloadsKey: map[string]any{"web": nil}}, http.StatusOK, nil)
	testutil.Eventually(t, 10*time.Second, func() error {
		h.API(t, "GET", "/api/v1/services/web?all=true", nil, http.StatusOK, &res)
		if len(res.Instances) != 0 {
			return errors.New("still registered")
		}
		return nil
	})
}
