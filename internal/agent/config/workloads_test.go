package config

import (
	"strings"
	"testing"
)

func TestWorkloadsSection(t *testing.T) {
	c, err := Parse([]byte("device_id: d1\nworkloads:\n  address: 127.0.0.2\n  stop_grace: 3s\n  log_lines: 50\n"))
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Workloads; !w.Enabled || w.Address != "127.0.0.2" || w.StopGrace.D().Seconds() != 3 || w.LogLines != 50 {
		t.Errorf("workloads = %+v", w)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate = %v", err)
	}
	if got := c.Workloads.Advertised(); got != "127.0.0.2" {
		t.Errorf("Advertised() = %q without advertise_address, want the address", got)
	}
	c.Workloads.AdvertiseAddress = "pump-7.plant.example"
	if got := c.Workloads.Advertised(); got != "pump-7.plant.example" || c.Validate() != nil {
		t.Errorf("Advertised() = %q, Validate = %v", got, c.Validate())
	}

	c, err = Parse([]byte("device_id: d1\nworkloads:\n  address: 0.0.0.0\n  advertise_address: \"http://x/\"\n  stop_grace: 0s\n  log_lines: 5\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate()
	for _, key := range []string{"workloads.address", "workloads.advertise_address", "workloads.stop_grace", "workloads.log_lines"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("Validate = %v; want a problem with %s", err, key)
		}
	}
	c.Workloads.Enabled = false
	if err := c.Validate(); err != nil {
		t.Errorf("disabled: Validate = %v", err)
	}
	if _, err := Parse([]byte("device_id: d1\nworkloads: {adress: 127.0.0.1}\n")); err == nil {
		t.Error("a misspelt workloads key was accepted")
	}
}
