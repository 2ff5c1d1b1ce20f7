package httpapi_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/auth"
	"github.com/outpost-edge/outpost/internal/hub/device"
	"github.com/outpost-edge/outpost/internal/hub/httpapi"
	"github.com/outpost-edge/outpost/internal/hub/store/sqlite"
)

// benchDevices is how many devices BenchmarkDeviceLookup looks up in turn,
// as bench/rest.sh does.
const benchDevices = 20

// BenchmarkDeviceLookup measures GET /api/v1/devices/{id} through the real
// router, middleware and JWT check over a real SQLite store, the request
// bench/rest.sh loads on a running hub. It calls the handler directly, so
// that the numbers are the hub's own cost without sockets and a client.
// The parallel variant runs 32 requests at a time, as rest.sh's clients do.
func BenchmarkDeviceLookup(b *testing.B) {
	ctx := b.Context()
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "outpost.db"))
	if err != nil {
		b.Fatalf("opening store: %v", err)
	}
	defer st.Close()
	logger := slog.New(slog.DiscardHandler)
	devices := device.NewService(st, tokenTTL, logger)
	issuer := auth.NewIssuer(apiKey, time.Hour)
	authSvc, err := auth.NewService(st, issuer)
	if err != nil {
		b.Fatalf("auth.NewService: %v", err)
	}
	h := httpapi.New(httpapi.Options{Devices: devices, Auth: authSvc, Telemetry: st, MQTTPort: mqttPort, Logger: logger})
	token, _, err := issuer.Issue(adminUser)
	if err != nil {
		b.Fatal(err)
	}
	paths := make([]string, benchDevices)
	for i := range paths {
		id := fmt.Sprintf("bench-%03d", i)
		if _, err := devices.Add(ctx, id, map[string]string{"site": "lab", "rack": fmt.Sprint(i)}); err != nil {
			b.Fatal(err)
		}
		paths[i] = "/api/v1/devices/" + id
	}
	// lookup sends the i-th request; it only reports a failure, as
	// RunParallel's goroutines must not call FailNow.
	lookup := func(b *testing.B, i int) bool {
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, paths[i%len(paths)], nil)
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Errorf("GET %s = %d %s", req.URL.Path, rec.Code, rec.Body)
			return false
		}
		return true
	}

	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if !lookup(b, i) {
				return
			}
			i++
		}
	})
	b.Run("parallel32", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if !lookup(b, i) {
					return
				}
				i++
			}
		})
	})
}
