package config

import (
	"strings"
	"testing"
)

func TestAPIValidate(t *testing.T) {
	for _, tc := range []struct {
		listen string
		remote bool
		bad    string
	}{
		{listen: DefaultAPIListen},
		{listen: ""},
		{listen: "[::1]:7070"},
		{listen: "localhost:7070"},
		{listen: "0.0.0.0:7070", bad: "not a loopback"},
		{listen: "10.1.2.3:7070", bad: "api.allow_remote"},
		{listen: "0.0.0.0:7070", remote: true},
		{listen: ":7070", remote: true},
		{listen: "7070", remote: true, bad: "not host:port"},
		{listen: "127.0.0.1", bad: "api.listen"},
	} {
		c := Default()
		c.DeviceID = "pump-7"
		c.API = API{Listen: tc.listen, AllowRemote: tc.remote}
		err := c.Validate()
		switch {
		case tc.bad == "" && err != nil:
			t.Errorf("api %+v: %v", c.API, err)
		case tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad) || !strings.Contains(err.Error(), "api.listen")):
			t.Errorf("api %+v: %v, want an api.listen error with %q", c.API, err, tc.bad)
		}
	}
}

func TestAPIParse(t *testing.T) {
	c, err := Parse([]byte("device_id: pump-7\n"))
	if err != nil || c.API.Listen != DefaultAPIListen || c.API.AllowRemote {
		t.Errorf("default api = %+v (%v)", c.API, err)
	}
	c, err = Parse([]byte("device_id: pump-7\napi:\n  listen: \"\"\n"))
	if err != nil || c.API.Listen != "" {
		t.Errorf("api.listen \"\" = %+v (%v), want off", c.API, err)
	}
	c, err = Parse([]byte("device_id: pump-7\napi:\n  listen: 0.0.0.0:7070\n  allow_remote: true\n"))
	if err != nil || c.API.Listen != "0.0.0.0:7070" || !c.API.AllowRemote || c.Validate() != nil {
		t.Errorf("remote api = %+v (%v)", c.API, err)
	}
	c.ApplyEnv(func(k string) (string, bool) { return "127.0.0.2:7070", k == "OUTPOST_AGENT_API_LISTEN" })
	if c.API.Listen != "127.0.0.2:7070" {
		t.Errorf("OUTPOST_AGENT_API_LISTEN: api.listen = %q", c.API.Listen)
	}
}
