package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/auth"
	"github.com/outpost-edge/outpost/internal/hub/device"
	"github.com/outpost-edge/outpost/internal/hub/httpapi"
	"github.com/outpost-edge/outpost/internal/hub/store/sqlite"
)

// fakeResolver answers from a fixed map and records the last query.
type fakeResolver struct {
	mu       sync.Mutex
	services map[string][]httpapi.ServiceInstance
	gotTags  []string
}

func (f *fakeResolver) Resolve(_ context.Context, service string, tags []string) ([]httpapi.ServiceInstance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gotTags = tags
	if service == "broken" {
		return nil, errors.New("registry on fire")
	}
	var out []httpapi.ServiceInstance
	for _, in := range f.services[service] {
		if hasAll(in.Tags, tags) {
			out = append(out, in)
		}
	}
	return out, nil
}

func (f *fakeResolver) tags() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gotTags
}

func hasAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// servicesEnv starts the API with res as its resolver (nil: none) and
// returns its URL and a joined device's password.
func servicesEnv(t *testing.T, res httpapi.ServiceResolver) (string, string) {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "outpost.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	authSvc, err := auth.NewService(st, auth.NewIssuer(apiKey, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	devices := device.NewService(st, tokenTTL, slog.New(slog.DiscardHandler))
	en, err := devices.Add(t.Context(), "pump-7", nil)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := devices.Join(t.Context(), en.JoinToken)
	if err != nil {
		t.Fatal(err)
	}
	opts := httpapi.Options{Devices: devices, Auth: authSvc, Telemetry: st, Logger: slog.New(slog.DiscardHandler)}
	if res != nil {
		opts.Services = res
	}
	srv := httptest.NewServer(httpapi.New(opts))
	t.Cleanup(srv.Close)
	return srv.URL, cred.Password
}

func getBasic(t *testing.T, url, user, pass string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func TestDeviceServices(t *testing.T) {
	web := []httpapi.ServiceInstance{
		{ID: "web-1", Address: "10.0.0.5", Port: 8080, Tags: []string{"v2", "eu"}, Meta: map[string]string{"device": "gw-1"}, Health: "passing"},
		{ID: "web-2", Address: "10.0.0.6", Port: 8080, Tags: []string{"v1"}, Health: "critical"},
	}
	res := &fakeResolver{services: map[string][]httpapi.ServiceInstance{"web": web}}
	base, pw := servicesEnv(t, res)
	path := base + "/api/v1/device/services/"

	for _, tc := range []struct {
		name, url, user, pass string
		status                int
		ids                   []string
	}{
		{name: "no credentials", url: path + "web", status: http.StatusUnauthorized},
		{name: "wrong password", url: path + "web", user: "pump-7", pass: "nope", status: http.StatusUnauthorized},
		{name: "unknown device", url: path + "web", user: "pump-8", pass: pw, status: http.StatusUnauthorized},
		{name: "all instances", url: path + "web", user: "pump-7", pass: pw, status: http.StatusOK, ids: []string{"web-1", "web-2"}},
		{name: "by tags", url: path + "web?tag=eu&tag=v2&tag=eu", user: "pump-7", pass: pw, status: http.StatusOK, ids: []string{"web-1"}},
		{name: "unknown service", url: path + "db", user: "pump-7", pass: pw, status: http.StatusOK, ids: []string{}},
		{name: "bad name", url: path + "we%20b", user: "pump-7", pass: pw, status: http.StatusBadRequest},
		{name: "bad tag", url: path + "web?tag=a%2Fb", user: "pump-7", pass: pw, status: http.StatusBadRequest},
		{name: "resolver fails", url: path + "broken", user: "pump-7", pass: pw, status: http.StatusInternalServerError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := getBasic(t, tc.url, tc.user, tc.pass)
			if code != tc.status {
				t.Fatalf("GET %s = %d %s, want %d", tc.url, code, body, tc.status)
			}
			if tc.ids == nil {
				var e struct {
					Error struct{ Code string } `json:"error"`
				}
				if err := json.Unmarshal(body, &e); err != nil || e.Error.Code == "" {
					t.Errorf("error body %s: want {error:{code,message}}", body)
				}
				return
			}
			var got struct {
				Service   string                    `json:"service"`
				Instances []httpapi.ServiceInstance `json:"instances"`
			}
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("body %s: %v", body, err)
			}
			ids := []string{}
			for _, in := range got.Instances {
				ids = append(ids, in.ID)
			}
			if !slices.Equal(ids, tc.ids) || got.Instances == nil {
				t.Errorf("instances %s, want ids %v", body, tc.ids)
			}
			if tc.name == "by tags" && !slices.Equal(res.tags(), []string{"eu", "v2"}) {
				t.Errorf("the resolver got tags %v, want [eu v2] (sorted, once each)", res.tags())
			}
		})
	}
	// The whole instance reaches the device.
	_, body := getBasic(t, path+"web?tag=eu", "pump-7", pw)
	var got struct {
		Instances []httpapi.ServiceInstance `json:"instances"`
	}
	if err := json.Unmarshal(body, &got); err != nil || len(got.Instances) != 1 {
		t.Fatalf("body %s: %v", body, err)
	}
	if in := got.Instances[0]; in.ID != "web-1" || in.Address != "10.0.0.5" || in.Port != 8080 || in.Health != "passing" || in.Meta["device"] != "gw-1" || !slices.Equal(in.Tags, []string{"v2", "eu"}) {
		t.Errorf("instance = %+v", in)
	}
}

func TestDeviceServicesNotMountedWithoutResolver(t *testing.T) {
	base, pw := servicesEnv(t, nil)
	if code, body := getBasic(t, base+"/api/v1/device/services/web", "pump-7", pw); code != http.StatusNotFound {
		t.Errorf("without a resolver: %d %s, want 404", code, body)
	}
}
