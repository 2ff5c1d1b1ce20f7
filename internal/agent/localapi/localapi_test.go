package localapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStoreOpensLazily(t *testing.T) {
	path := filepath.Join(t.TempDir(), StateFileName)
	s := NewStore(path)
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("state.db exists before first use: %v", err)
	}
	if err := s.Put("a/b", "text/plain", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("state.db after a put: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if _, _, _, err := s.Get("a/b"); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close = %v, want ErrClosed", err)
	}

	s2 := NewStore(path)
	defer s2.Close()
	v, ct, ok, err := s2.Get("a/b")
	if err != nil || !ok || string(v) != "v" || ct != "text/plain" {
		t.Errorf("reopened: %q %q %v %v", v, ct, ok, err)
	}
	if err := s2.Put("big", "", make([]byte, MaxValueBytes+1)); err == nil {
		t.Error("a value over the limit was stored")
	}
}

func TestValidKey(t *testing.T) {
	for _, tc := range []struct {
		key string
		ok  bool
	}{
		{"a", true}, {"pump/limits.v1_x-2", true}, {strings.Repeat("k", MaxKeyLen), true},
		{"", false}, {strings.Repeat("k", MaxKeyLen+1), false}, {"a b", false}, {"a?b", false}, {"ä", false},
	} {
		if err := ValidKey(tc.key); (err == nil) != tc.ok {
			t.Errorf("ValidKey(%q) = %v, want ok %v", tc.key, err, tc.ok)
		}
	}
}

func TestParsePoints(t *testing.T) {
	now := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, body string
		n          int
		problems   []string
	}{
		{name: "single", body: `{"sensor":"a","value":1}`, n: 1},
		{name: "list", body: `{"points":[{"sensor":"a","value":1},{"sensor":"b","value":"x","ts":"2026-11-26T00:00:00Z"},{"sensor":"c","value":false,"ts":1795000000000}]}`, n: 3},
		{name: "future ts", body: `{"sensor":"a","value":1,"ts":"2026-11-28T00:00:00Z"}`, problems: []string{"point: bad_timestamp"}},
		{name: "two bad", body: `{"points":[{"sensor":"","value":1},{"sensor":"a","value":null}]}`, problems: []string{"points[0]: bad_name", "points[1]: value is missing"}},
		{name: "one point two problems", body: `{"sensor":"a b"}`, problems: []string{"point: bad_name"}},
		{name: "number too big", body: `{"sensor":"a","value":1e999}`, problems: []string{"point: value must be"}},
		{name: "empty", body: `{"points":[]}`, problems: []string{"points is empty"}},
		{name: "null points", body: `{"points":null}`, problems: []string{"points must be a list"}},
		{name: "not an object", body: `3`, problems: []string{"body must be a JSON object"}},
		{name: "too many", body: `{"points":[` + strings.Repeat(`{"sensor":"a","value":1},`, 5000) + `{"sensor":"a","value":1}]}`, problems: []string{"5001 points"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pts, problems := parsePoints([]byte(tc.body), now)
			if len(problems) != len(tc.problems) {
				t.Fatalf("problems %q, want %q", problems, tc.problems)
			}
			for i, p := range problems {
				if !strings.HasPrefix(p, tc.problems[i]) {
					t.Errorf("problem %q, want it to start with %q", p, tc.problems[i])
				}
			}
			if len(problems) == 0 && len(pts) != tc.n {
				t.Errorf("%d points, want %d", len(pts), tc.n)
			}
			if tc.name == "single" && pts[0].GetTsUnixMs() != now.UnixMilli() {
				t.Errorf("a point without ts has ts %d, want now", pts[0].GetTsUnixMs())
			}
		})
	}
}

type nopSink struct{}

func (nopSink) Append(context.Context, []*outpostv1.Point) error { return nil }

func TestNewReportsEveryProblem(t *testing.T) {
	_, err := New(Options{})
	if err == nil || !strings.Contains(err.Error(), "data directory") || !strings.Contains(err.Error(), "sink") || !strings.Contains(err.Error(), "desired") {
		t.Errorf("New(Options{}) = %v", err)
	}
	a, err := New(Options{DataDir: t.TempDir(), Sink: nopSink{}, Desired: func() (map[string]any, error) { return nil, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Error(err)
	}
}

// TestServicesCacheWrites: an identical answer within cacheRefresh is not
// written again; a changed one, or one after cacheRefresh, is.
func TestServicesCacheWrites(t *testing.T) {
	var mu sync.Mutex
	port := 8080
	hub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, `{"service":"web","instances":[{"id":"w1","address":"10.0.0.5","port":%d}]}`, port)
	}))
	defer hub.Close()
	now := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	a, err := New(Options{DataDir: t.TempDir(), Sink: nopSink{}, Desired: func() (map[string]any, error) { return nil, nil },
		HubURL: hub.URL, DeviceID: "pump-7", Password: "pw", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	h := a.Handler()
	lookup := func() ServicesAnswer {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/services/web", nil))
		var ans ServicesAnswer
		if err := json.Unmarshal(rec.Body.Bytes(), &ans); rec.Code != http.StatusOK || err != nil {
			t.Fatalf("lookup = %d %s", rec.Code, rec.Body)
		}
		return ans
	}
	cached := func() ServicesAnswer {
		t.Helper()
		ans, err := a.cachedServices("web")
		if err != nil {
			t.Fatal(err)
		}
		return ans
	}
	t0 := now
	lookup()
	now = now.Add(time.Minute)
	if got := lookup(); !got.FetchedAt.Equal(now) || got.Cached {
		t.Errorf("fresh answer = %+v", got)
	}
	if c := cached(); !c.FetchedAt.Equal(t0) {
		t.Errorf("an identical answer a minute later was written again (cached at %v)", c.FetchedAt)
	}
	mu.Lock()
	port = 9090
	mu.Unlock()
	lookup()
	if c := cached(); !c.FetchedAt.Equal(now) || c.Instances[0].Port != 9090 {
		t.Errorf("a changed answer was not cached: %+v", c)
	}
	t1 := now
	now = now.Add(cacheRefresh)
	lookup()
	if c := cached(); !c.FetchedAt.Equal(now) || c.FetchedAt.Equal(t1) {
		t.Errorf("an identical answer after %s was not written: %+v", cacheRefresh, c)
	}
}

// TestBodyLimits: a body over the endpoint's limit is refused with 413
// and stores nothing.
func TestBodyLimits(t *testing.T) {
	a, err := New(Options{DataDir: t.TempDir(), Sink: nopSink{}, Desired: func() (map[string]any, error) { return nil, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	h := a.Handler()
	for _, tc := range []struct {
		method, path, body, want string
	}{
		{"POST", "/v1/publish", strings.Repeat(" ", maxPublishBytes+1), fmt.Sprintf("body larger than %d bytes", maxPublishBytes)},
		{"PUT", "/v1/state/big", strings.Repeat("v", MaxValueBytes+1), fmt.Sprintf("value larger than %d bytes", MaxValueBytes)},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body)))
		var eb errorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || rec.Code != http.StatusRequestEntityTooLarge || eb.Error != tc.want {
			t.Errorf("%s %s = %d %s, want 413 %q", tc.method, tc.path, rec.Code, rec.Body, tc.want)
		}
	}
	if _, _, ok, err := a.store.Get("big"); ok || err != nil {
		t.Errorf("the refused value was stored: %v %v", ok, err)
	}
}

// TestServicesNoHubNoCache: without a hub and without a cached answer a
// lookup fails with 503 and says why.
func TestServicesNoHubNoCache(t *testing.T) {
	a, err := New(Options{DataDir: t.TempDir(), Sink: nopSink{}, Desired: func() (map[string]any, error) { return nil, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/v1/services/web", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "no hub_url configured") || !strings.Contains(rec.Body.String(), ErrNoCache.Error()) {
		t.Errorf("lookup without hub or cache = %d %s, want 503 naming both causes", rec.Code, rec.Body)
	}
}
