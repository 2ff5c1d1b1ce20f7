package cli

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/httpapi"
	"github.com/outpost-edge/outpost/internal/hub/registry"
	"github.com/outpost-edge/outpost/internal/hub/store/sqlite"
	"github.com/outpost-edge/outpost/internal/testutil"
)

const registryToken = "registry-token"

// tokenAuth accepts one bearer token.
type tokenAuth struct{}

func (tokenAuth) Login(context.Context, string, string) (string, time.Time, error) {
	return "", time.Time{}, errors.New("no logins here")
}

func (tokenAuth) Verify(token string) (string, error) {
	if token != registryToken {
		return "", errors.New("invalid token")
	}
	return "admin", nil
}

// startRegistryHub serves the hub's real REST API with a real registry
// over the built-in backend.
func startRegistryHub(t *testing.T) (string, *registry.Service) {
	t.Helper()
	cleanEnv(t)
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "outpost.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg, err := registry.New(registry.Options{Backend: registry.NewStoreBackend(st)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.New(httpapi.Options{Auth: tokenAuth{}, Registry: reg, Logger: slog.New(slog.DiscardHandler)}))
	t.Cleanup(srv.Close)
	return srv.URL, reg
}

func TestServicesCommands(t *testing.T) {
	hub, reg := startRegistryHub(t)
	at := func(args ...string) (string, error) {
		t.Helper()
		out, _, err := run(t, "", append([]string{"--hub", hub, "--token", registryToken}, args...)...)
		return out, err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := at(args...)
		if err != nil {
			t.Fatalf("outpost %s: %v", strings.Join(args, " "), err)
		}
		return out
	}

	out := must("services", "register", "web", "--address", "10.0.0.5", "--port", "8080", "--ttl", "30s", "--tag", "blue", "--meta", "zone=a")
	if !strings.Contains(out, "Registered web/10.0.0.5:8080 at 10.0.0.5:8080 (passing)") || !strings.Contains(out, "outpost services renew web 10.0.0.5:8080") {
		t.Errorf("register ttl:\n%s", out)
	}
	out = must("services", "register", "web", "--id", "web-2", "--address", "10.0.0.6", "--port", "8080", "--check", "http:/healthz", "--interval", "1m")
	if !strings.Contains(out, "Registered web/web-2 at 10.0.0.6:8080 (critical)") {
		t.Errorf("register check:\n%s", out)
	}
	in, err := reg.List(t.Context(), "web")
	if err != nil || len(in) != 2 || in[0].Meta["zone"] != "a" || in[0].Tags[0] != "blue" || in[1].Check == nil || in[1].Check.Path != "/healthz" || in[1].Check.Interval != time.Minute {
		t.Fatalf("registry holds %+v, %v", in, err)
	}
	if _, err := reg.Register(t.Context(), registry.Instance{Service: "db", ID: "cam-1", Address: "10.0.0.7", Port: 5432,
		Source: registry.SourceAgent, Device: "cam-1", Health: registry.Passing}); err != nil {
		t.Fatal(err)
	}

	out = must("services", "ls")
	if want := "SERVICE   INSTANCES   PASSING\ndb        1           1\nweb       2           1\n"; out != want {
		t.Errorf("ls:\n%s\nwant:\n%s", out, want)
	}
	out = must("services", "resolve", "web")
	if !strings.Contains(out, "ID              ADDRESS    PORT   HEALTH    SOURCE   DEVICE   TAGS") ||
		!strings.Contains(out, "10.0.0.5:8080   10.0.0.5   8080   passing   ttl      -        blue") || strings.Contains(out, "web-2") {
		t.Errorf("resolve:\n%s", out)
	}
	out = must("services", "resolve", "web", "--all")
	if !strings.Contains(out, "OUTPUT") || !strings.Contains(out, "web-2") || !strings.Contains(out, "waiting for the first check") {
		t.Errorf("resolve --all:\n%s", out)
	}
	out = must("services", "resolve", "web", "--tag", "green")
	if strings.Count(out, "\n") != 1 {
		t.Errorf("resolve --tag green:\n%s; want the header only", out)
	}
	out = must("services", "resolve", "db", "-o", "json")
	var res instancesJSON
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Service != "db" || len(res.Instances) != 1 || res.Instances[0].Device != "cam-1" {
		t.Errorf("resolve -o json: %s (%v)", out, err)
	}

	out = must("services", "renew", "web", "10.0.0.5:8080")
	if !strings.HasPrefix(out, "Renewed web/10.0.0.5:8080 until ") {
		t.Errorf("renew: %s", out)
	}
	out = must("services", "deregister", "web", "web-2")
	if out != "Deregistered web/web-2.\n" {
		t.Errorf("deregister: %s", out)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"services", "register", "web"}, "--address is required\n--port is required\n--ttl or --check is required"},
		{[]string{"services", "register", "web", "--address", "a", "--port", "1", "--ttl", "1s", "--check", "tcp"}, "not both"},
		{[]string{"services", "register", "web", "--address", "a", "--port", "1", "--check", "udp"}, `--check "udp"`},
		{[]string{"services", "register", "web", "--address", "a", "--port", "1", "--ttl", "1s", "--meta", "x"}, `--meta "x"`},
		{[]string{"services", "register", "web", "--address", "a b", "--port", "1", "--ttl", "1s"}, "address"},
		{[]string{"services", "renew", "web", "web-2"}, "not_found"},
		{[]string{"services", "renew", "db", "cam-1"}, "no TTL"},
		{[]string{"services", "deregister", "web", "web-2"}, "not_found"},
		{[]string{"services", "resolve", "Bad"}, "bad_request"},
		{[]string{"services", "watch", "Bad"}, "bad_request"},
	} {
		if _, err := at(tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("outpost %s: %v; want an error with %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}

func TestServicesWatch(t *testing.T) {
	hub, reg := startRegistryHub(t)
	for _, format := range []string{"table", "json"} {
		t.Run(format, func(t *testing.T) {
			var out, errb syncBuffer
			root := NewRoot(&out, &errb)
			root.SetArgs([]string{"--hub", hub, "--token", registryToken, "-o", format, "services", "watch", "web-" + format, "--tag", "blue"})
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- root.ExecuteContext(ctx) }()
			want := func(lines ...string) func() error {
				return func() error {
					got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
					if len(got) != len(lines) {
						return errors.New("output so far:\n" + out.String())
					}
					for i, l := range lines {
						if !strings.Contains(got[i], l) {
							return errors.New("output so far:\n" + out.String())
						}
					}
					return nil
				}
			}
			if format == "table" {
				testutil.Eventually(t, 10*time.Second, want("web-table: 0 passing: none"))
			} else {
				testutil.Eventually(t, 10*time.Second, want(`"instances":[]`))
			}
			for _, in := range []registry.Instance{
				{Service: "web-" + format, ID: "green-1", Address: "10.0.0.4", Port: 80, Tags: []string{"green"}, TTL: time.Minute},
				{Service: "web-" + format, ID: "blue-1", Address: "10.0.0.5", Port: 80, Tags: []string{"blue"}, TTL: time.Minute},
			} {
				if _, err := reg.Register(t.Context(), in); err != nil {
					t.Fatal(err)
				}
			}
			if format == "table" {
				testutil.Eventually(t, 10*time.Second, want("0 passing", "web-table: 1 passing: blue-1=10.0.0.5:80"))
			} else {
				testutil.Eventually(t, 10*time.Second, want(`"instances":[]`, `"id":"blue-1"`))
			}
			cancel()
			if err := <-done; err != nil {
				t.Errorf("watch after interrupt: %v (stderr %s)", err, errb.String())
			}
		})
	}
}

func TestNetJoin(t *testing.T) {
	for _, tc := range []struct {
		host string
		port int
		want string
	}{
		{"10.0.0.5", 80, "10.0.0.5:80"},
		{"db.local", 5432, "db.local:5432"},
		{"fd00::5", 8080, "[fd00::5]:8080"},
	} {
		if got := netJoin(tc.host, tc.port); got != tc.want {
			t.Errorf("netJoin(%q, %d) = %q, want %q", tc.host, tc.port, got, tc.want)
		}
	}
}
