package collect

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHTTPSource(t *testing.T) {
	const doc = `{
		"sensors": [{"value": 21.5}, {"value": -3}],
		"status": {"ok": true, "mode": "auto", "missing": null, "obj": {}},
		"a/b": 1, "m~n": 2, "": 3,
		"big": 12345678901234567890
	}`
	mux := http.NewServeMux()
	mux.HandleFunc("/doc", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" || r.Header.Get("Accept") != "application/json" {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, doc)
	})
	mux.HandleFunc("/down", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("/huge", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"v": "%s"}`, strings.Repeat("x", MaxHTTPBodyBytes))
	})
	mux.HandleFunc("/bad", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"v": 1`) })
	mux.HandleFunc("/two", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"v": 1} {"v": 2}`) })
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	srv := httptest.NewServer(mux)
	defer srv.Close()

	fields := map[string]string{
		"t0": "/sensors/0/value", "t1": "/sensors/1/value", "ok": "/status/ok", "mode": "/status/mode",
		"slash": "/a~1b", "tilde": "/m~0n", "empty_key": "/", "big": "/big",
	}
	s, err := NewHTTP("plc", srv.URL+"/doc", map[string]string{"Authorization": "Bearer s3cret"}, fields)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := collectWithin(t, s, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := `[plc/big=1.2345678901234567e+19 plc/empty_key=3 plc/mode="auto" plc/ok=true plc/slash=1 plc/t0=21.5 plc/t1=-3 plc/tilde=2]`
	if fmt.Sprint(got) != want {
		t.Errorf("points = %v\nwant     %v", got, want)
	}

	t.Run("bad pointers fail their field only", func(t *testing.T) {
		s, err := NewHTTP("plc", srv.URL+"/doc", map[string]string{"Authorization": "Bearer s3cret"}, map[string]string{
			"t0": "/sensors/0/value", "gone": "/nothing", "null": "/status/missing", "obj": "/status/obj",
			"idx": "/sensors/7/value", "lead0": "/sensors/01/value", "into": "/status/ok/x",
		})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		got, err := collectWithin(t, s, 5*time.Second)
		if fmt.Sprint(got) != "[plc/t0=21.5]" {
			t.Errorf("points = %v, want only plc/t0", got)
		}
		for _, want := range []string{
			`plc/gone ("/nothing"): no member "nothing"`, "plc/null", "null", "plc/obj", "object",
			"index 7 beyond", `"01" is not an array index`, "steps into a JSON boolean",
		} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("err lacks %q:\n%v", want, err)
			}
		}
	})

	for _, tt := range []struct {
		path, wantErr string
	}{
		{"/down", "503"},
		{"/doc", "401"}, // no Authorization header
		{"/huge", "larger than"},
		{"/bad", "not JSON"},
		{"/two", "data after the document"},
		{"/hang", "deadline exceeded"},
	} {
		t.Run(tt.path, func(t *testing.T) {
			s, err := NewHTTP("x", srv.URL+tt.path, nil, map[string]string{"v": "/v"})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			start := time.Now()
			if _, err := collectWithin(t, s, 300*time.Millisecond); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("Collect took %s", took)
			}
		})
	}

	for _, tt := range []struct {
		url    string
		fields map[string]string
	}{
		{"ftp://x/y", map[string]string{"v": "/v"}},
		{srv.URL, nil},
		{srv.URL, map[string]string{"v": "v"}},
		{srv.URL, map[string]string{"bad name": "/v"}},
	} {
		if _, err := NewHTTP("x", tt.url, nil, tt.fields); err == nil {
			t.Errorf("NewHTTP(%q, %v) = nil error", tt.url, tt.fields)
		}
	}
}
