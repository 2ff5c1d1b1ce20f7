package httpapi_test

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func TestPatchDeviceLabels(t *testing.T) {
	e := newEnv(t, nil)
	e.callJSON(t, "POST", "/api/v1/devices", e.token,
		map[string]any{"id": "pump-7", "labels": map[string]string{"site": "plant-1", "old": "x"}}, http.StatusCreated, nil)

	tests := []struct {
		name string
		body string
		want map[string]string
	}{
		{"set and remove", `{"labels":{"line":"3","old":null}}`, map[string]string{"site": "plant-1", "line": "3"}},
		{"change", `{"labels":{"site":"plant-2"}}`, map[string]string{"site": "plant-2", "line": "3"}},
		{"remove missing is a no-op", `{"labels":{"never":null}}`, map[string]string{"site": "plant-2", "line": "3"}},
		{"empty patch", `{"labels":{}}`, map[string]string{"site": "plant-2", "line": "3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, raw := e.do(t, "PATCH", "/api/v1/devices/pump-7", e.token, tt.body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("PATCH = %d %s, want 200", resp.StatusCode, raw)
			}
			var got struct {
				ID     string            `json:"id"`
				Labels map[string]string `json:"labels"`
			}
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatal(err)
			}
			if got.ID != "pump-7" || !reflect.DeepEqual(got.Labels, tt.want) {
				t.Errorf("PATCH answered %s, want labels %v", raw, tt.want)
			}
			// The answer is exactly what GET returns.
			_, getRaw := e.do(t, "GET", "/api/v1/devices/pump-7", e.token, nil)
			if string(getRaw) != string(raw) {
				t.Errorf("PATCH answered\n%s\nGET answers\n%s", raw, getRaw)
			}
		})
	}

	// Label selection sees the change.
	var list struct {
		Devices []struct{ ID string } `json:"devices"`
	}
	e.callJSON(t, "GET", "/api/v1/devices?label=site=plant-2", e.token, nil, http.StatusOK, &list)
	if len(list.Devices) != 1 || list.Devices[0].ID != "pump-7" {
		t.Errorf("devices with site=plant-2 = %+v, want pump-7", list.Devices)
	}
}

func TestPatchDeviceRefused(t *testing.T) {
	e := newEnv(t, nil)
	e.callJSON(t, "POST", "/api/v1/devices", e.token,
		map[string]any{"id": "pump-7", "labels": map[string]string{"site": "plant-1"}}, http.StatusCreated, nil)
	tests := []struct {
		name   string
		path   string
		token  string
		body   string
		status int
		code   string
		msgHas []string
	}{
		{"unknown device", "/api/v1/devices/nope", e.token, `{"labels":{"a":"b"}}`, http.StatusNotFound, "not_found", []string{"nope"}},
		{"every problem", "/api/v1/devices/pump-7", e.token,
			`{"labels":{"bad key":"v","long":"` + strings.Repeat("x", 256) + `"}}`, http.StatusBadRequest, "bad_request",
			[]string{`label key "bad key"`, `label "long": value longer than 255 bytes`}},
		{"no labels", "/api/v1/devices/pump-7", e.token, `{}`, http.StatusBadRequest, "bad_request", []string{`"labels" is required`}},
		{"labels null", "/api/v1/devices/pump-7", e.token, `{"labels":null}`, http.StatusBadRequest, "bad_request", []string{`"labels" is required`}},
		{"value not a string", "/api/v1/devices/pump-7", e.token, `{"labels":{"a":1}}`, http.StatusBadRequest, "bad_request", []string{"invalid JSON"}},
		{"unknown field", "/api/v1/devices/pump-7", e.token, `{"labels":{},"id":"x"}`, http.StatusBadRequest, "bad_request", []string{"invalid JSON"}},
		{"empty body", "/api/v1/devices/pump-7", e.token, ``, http.StatusBadRequest, "bad_request", []string{"empty"}},
		{"no token", "/api/v1/devices/pump-7", "", `{"labels":{"a":"b"}}`, http.StatusUnauthorized, "unauthorized", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, raw := e.do(t, "PATCH", tt.path, tt.token, tt.body)
			wantError(t, resp, raw, tt.status, tt.code, tt.msgHas...)
		})
	}
	var d struct {
		Labels map[string]string `json:"labels"`
	}
	e.callJSON(t, "GET", "/api/v1/devices/pump-7", e.token, nil, http.StatusOK, &d)
	if !reflect.DeepEqual(d.Labels, map[string]string{"site": "plant-1"}) {
		t.Errorf("labels after refused patches = %v, want them unchanged", d.Labels)
	}
}
