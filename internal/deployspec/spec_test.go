package deployspec

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustParse(t *testing.T, data string) Spec {
	t.Helper()
	s, err := Parse([]byte(data))
	if err != nil {
		t.Fatalf("Parse: %v\ninput:\n%s", err, data)
	}
	return s
}

// problemsOf returns the problems of err, failing unless it is Problems.
func problemsOf(t *testing.T, err error) Problems {
	t.Helper()
	var ps Problems
	if !errors.As(err, &ps) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("error %v (%T) is not Problems", err, err)
	}
	return ps
}

const minimal = "name: thermo-api\nartifact: thermo-api@1.2.0\n"

func TestFullSpecYAMLAndJSONParseEqual(t *testing.T) {
	y, err := Parse(readFile(t, "full.yaml"))
	if err != nil {
		t.Fatalf("YAML: %v", err)
	}
	j, err := Parse(readFile(t, "full.json"))
	if err != nil {
		t.Fatalf("JSON: %v", err)
	}
	want := Spec{
		Name:      "thermo-api",
		Artifact:  "thermo-api@1.2.0",
		Args:      []string{"--listen", ":8081"},
		Env:       map[string]string{"LOG_LEVEL": "info", "PORT": "8081"},
		Ports:     []int{8081, 9090},
		User:      "outpost-svc",
		Resources: Resources{CPU: 200, Memory: 64 << 20},
		Health: &Health{
			HTTP:     &HTTPCheck{Port: 8081, Path: "/healthz"},
			Interval: Duration(5 * time.Second), Timeout: Duration(time.Second), FailureThreshold: 4,
		},
		Restart:  Restart{Policy: RestartOnFailure, BackoffMin: Duration(2 * time.Second), BackoffMax: Duration(30 * time.Second)},
		Selector: map[string]string{"site": "plant-1", "tier": "edge"},
		Strategy: Strategy{Type: StrategyRolling, Batch: Batch{Percent: 10}, MaxUnavailable: 0,
			Pause: Duration(30 * time.Second), HealthTimeout: Duration(5 * time.Minute)},
	}
	if !reflect.DeepEqual(y, want) {
		t.Errorf("YAML parsed to\n%+v\nwant\n%+v", y, want)
	}
	// The JSON file lists the ports in another order; otherwise it is the same.
	if !y.Equal(j) || y.Revision() != j.Revision() {
		t.Errorf("YAML and JSON differ:\n%s\n%s", y.Canonical(), j.Canonical())
	}
	j.Ports = y.Ports
	if !reflect.DeepEqual(y, j) {
		t.Errorf("JSON parsed to\n%+v\nwant\n%+v", j, y)
	}
	if y.ArtifactName() != "thermo-api" || y.ArtifactVersion() != "1.2.0" {
		t.Errorf("artifact = %q %q", y.ArtifactName(), y.ArtifactVersion())
	}
}

func TestCanonicalRoundTrip(t *testing.T) {
	for _, name := range []string{"full.yaml", "full.json"} {
		s, err := Parse(readFile(t, name))
		if err != nil {
			t.Fatal(err)
		}
		c := s.Canonical()
		want := `{"name":"thermo-api","artifact":"thermo-api@1.2.0","args":["--listen",":8081"],` +
			`"env":{"LOG_LEVEL":"info","PORT":"8081"},"ports":[8081,9090],"user":"outpost-svc",` +
			`"resources":{"cpu":"200m","memory":"64Mi"},"health":{"http":{"port":8081,"path":"/healthz"},` +
			`"interval":"5s","timeout":"1s","failure_threshold":4},` +
			`"restart":{"policy":"on-failure","backoff_min":"2s","backoff_max":"30s"},` +
			`"selector":{"site":"plant-1","tier":"edge"},` +
			`"strategy":{"type":"rolling","batch":"10%","max_unavailable":0,"pause":"30s","health_timeout":"5m0s"}}`
		if string(c) != want {
			t.Errorf("%s: Canonical =\n%s\nwant\n%s", name, c, want)
		}
		back, err := Parse(c)
		if err != nil {
			t.Fatalf("%s: Parse(Canonical): %v", name, err)
		}
		if !back.Equal(s) || string(back.Canonical()) != string(c) {
			t.Errorf("%s: round trip changed the spec:\n%s", name, back.Canonical())
		}
		var viaJSON Spec
		if err := json.Unmarshal(c, &viaJSON); err != nil {
			t.Fatalf("json.Unmarshal(Canonical): %v", err)
		}
		if !viaJSON.Equal(s) {
			t.Errorf("json.Unmarshal round trip: %s", viaJSON.Canonical())
		}
		y, err := yaml.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if fromYAML, err := Parse(y); err != nil || !fromYAML.Equal(s) {
			t.Errorf("yaml.Marshal round trip: %v\n%s", err, y)
		}
	}
}

func TestDefaults(t *testing.T) {
	s := mustParse(t, minimal+"health: {tcp: {port: 8081}}\nports: [8081]\n")
	want := Spec{
		Name: "thermo-api", Artifact: "thermo-api@1.2.0", Ports: []int{8081},
		Health: &Health{TCP: &TCPCheck{Port: 8081},
			Interval: Duration(10 * time.Second), Timeout: Duration(2 * time.Second), FailureThreshold: 3},
		Restart: Restart{Policy: "always", BackoffMin: Duration(time.Second), BackoffMax: Duration(time.Minute)},
		Strategy: Strategy{Type: "rolling", Batch: Batch{Percent: 25}, MaxUnavailable: 1, Pause: 0,
			HealthTimeout: Duration(2 * time.Minute)},
	}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("got\n%+v\nwant\n%+v", s, want)
	}

	s = mustParse(t, minimal)
	if s.Health != nil || s.Resources != (Resources{}) || s.User != "" || len(s.Selector) != 0 {
		t.Errorf("optional keys not empty: %+v", s)
	}
	if s.Strategy != want.Strategy || s.Restart != want.Restart {
		t.Errorf("defaults = %+v %+v", s.Restart, s.Strategy)
	}

	// A partial mapping keeps the defaults of the keys it leaves out; null
	// counts as left out; an explicit 0 is kept.
	s = mustParse(t, minimal+"strategy: {batch: 3, max_unavailable: 0, pause: ~}\nrestart: {backoff_max: 5m}\n"+
		"health: {http: {port: 80}}\nports: [80]\n")
	if s.Strategy.Batch != (Batch{Count: 3}) || s.Strategy.MaxUnavailable != 0 || s.Strategy.Type != "rolling" ||
		s.Strategy.HealthTimeout.D() != 2*time.Minute || s.Restart.BackoffMin.D() != time.Second ||
		s.Restart.BackoffMax.D() != 5*time.Minute || s.Health.HTTP.Path != "/" {
		t.Errorf("partial keys: %+v %+v %+v", s.Strategy, s.Restart, s.Health.HTTP)
	}
}

func TestUnknownKeyRejectedWithPath(t *testing.T) {
	for _, tc := range []struct{ in, path string }{
		{minimal + "nmae: x\n", "nmae"},
		{minimal + "resources: {cpu: 1, mem: 64Mi}\n", "resources.mem"},
		{minimal + "ports: [80]\nhealth: {http: {port: 80, paht: /}}\n", "health.http.paht"},
		{minimal + "strategy: {batch_size: 10%}\n", "strategy.batch_size"},
		{`{"name": "a", "artifact": "a@1.0.0", "restart": {"policy": "always", "retries": 3}}`, "restart.retries"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			ps := problemsOf(t, err)
			if len(ps) != 1 || ps[0].Path != tc.path || !strings.Contains(ps[0].Message, "unknown key") {
				t.Fatalf("problems = %q, want one unknown key at %s", ps, tc.path)
			}
			if !strings.HasPrefix(err.Error(), tc.path+": unknown key") {
				t.Errorf("error %q does not start with the path", err)
			}
		})
	}
}

func TestAllProblemsReportedAtOnce(t *testing.T) {
	in := `
name: Thermo_API
artifact: thermo-api
ports: [8081, 8081]
resources: {cpu: 200m, memory: 64MB}
health: {tcp: {port: 9090}}
restart: {policy: sometimes}
`
	_, err := Parse([]byte(in))
	ps := problemsOf(t, err)
	want := []string{
		`resources.memory: "64MB": use Ki, Mi, Gi (binary) or k, M, G`,
		`name: "Thermo_API": want 1–48 of a-z 0-9 -, starting with a letter and not ending with -`,
		`artifact: "thermo-api": want NAME@VERSION, e.g. thermo-api@1.2.0`,
		`ports[1]: 8081 is listed twice`,
		`health.tcp.port: 9090 is not among ports [8081 8081]; add it there`,
		`restart.policy: "sometimes": want always or on-failure`,
	}
	var got []string
	for _, p := range ps {
		got = append(got, p.Error())
	}
	if !slices.Equal(got, want) {
		t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if err.Error() != strings.Join(want, "\n") {
		t.Errorf("Error() = %q", err)
	}
}

func TestProblems(t *testing.T) {
	long := strings.Repeat("x", 4097)
	for _, tc := range []struct{ in, want string }{
		{"", "empty spec"},
		{"~", "empty spec"},
		{"name: [", "not valid YAML or JSON"},
		{"{\"name\": ", "not valid YAML or JSON"},
		{minimal + "---\n" + minimal, "more than one YAML document"},
		{"- a\n- b\n", "want a mapping of keys, got a list"},
		{"artifact: a@1.0.0\n", "name: missing"},
		{"name: a\n", "artifact: missing"},
		{"name: 9lives\nartifact: a@1.0.0\n", "name: \"9lives\""},
		{"name: thermo-\nartifact: a@1.0.0\n", "not ending with -"},
		{"name: " + strings.Repeat("a", 49) + "\nartifact: a@1.0.0\n", "want 1–48"},
		{"name: a\nartifact: a@1.2\n", `version "1.2" must be a semantic version`},
		{"name: a\nartifact: .a@1.2.0\n", `name ".a" must be`},
		{"name: a\nname: b\nartifact: a@1.0.0\n", "name: key given more than once"},
		{`{"name": "a", "name": "b", "artifact": "a@1.0.0"}`, "name: key given more than once"},
		{minimal + "args: " + strings.Repeat("[", 1) + strings.Repeat("x, ", 65) + "x]\n", "args: 66 entries, at most 64"},
		{minimal + "args: [" + long + "]\n", "args[0]: 4097 bytes, at most 4096"},
		{minimal + "args: {a: b}\n", "args: want a list, got a mapping"},
		{minimal + "env: {1X: a}\n", `env.1X: "1X" is not a valid variable name`},
		{minimal + "env: {A-B: a}\n", `env.A-B: "A-B" is not a valid variable name`},
		{minimal + "env: {OUTPOST_TOKEN: a}\n", "env.OUTPOST_TOKEN: names starting with OUTPOST_ are reserved"},
		{minimal + "env: {BIG: " + long + "}\n", "env.BIG: value of 4097 bytes, at most 4096"},
		{minimal + "env: {A: [1]}\n", "env.A: want a single value, got a list"},
		{minimal + "env: [A]\n", "env: want a mapping of keys to values, got a list"},
		{minimal + "ports: [0]\n", "ports[0]: 0 is not a TCP port"},
		{minimal + "ports: [65536]\n", "ports[0]: 65536 is not a TCP port"},
		{minimal + "ports: [\"80\"]\n", `ports[0]: want a whole number, got "80"`},
		{minimal + "ports: [80.5]\n", `ports[0]: want a whole number, got "80.5"`},
		{minimal + "user: root\n", `user: "root": must be an unprivileged user`},
		{minimal + "user: 0\n", `user: "0": must be an unprivileged user, not uid 0`},
		{minimal + "user: Bad User\n", `user: "Bad User": want a user name`},
		{minimal + "resources: {cpu: -1}\n", `resources.cpu: "-1": must not be negative`},
		{minimal + "resources: {memory: 1Ki}\n", "resources.memory: 1Ki: at least 1Mi when set"},
		{minimal + "health: {interval: 5s}\n", "health: set one check: http, tcp or exec"},
		{minimal + "ports: [80]\nhealth: {http: {port: 80}, tcp: {port: 80}}\n", "health: set only one of http, tcp and exec, got http and tcp"},
		{minimal + "ports: [80]\nhealth: {http: {port: 80, path: healthz}}\n", `health.http.path: "healthz": must start with /`},
		{minimal + "ports: [80]\nhealth: {http: {port: 80, path: /a b}}\n", "must not contain spaces"},
		{minimal + "health: {http: {path: /}}\n", "health.http.port: missing"},
		{minimal + "health: {exec: {command: []}}\n", "health.exec.command: missing"},
		{minimal + "health: {exec: {command: [\"\", x]}}\n", "health.exec.command[0]: empty"},
		{minimal + "health: {exec: {command: [x]}, interval: 500ms}\n", "health.interval: 500ms: want 1s to 1h0m0s"},
		{minimal + "health: {exec: {command: [x]}, timeout: 11s}\n", "health.timeout: 11s: want above 0 and at most health.interval (10s)"},
		{minimal + "health: {exec: {command: [x]}, failure_threshold: 0}\n", "health.failure_threshold: 0: want 1 to 100"},
		{minimal + "health: {exec: {command: [x]}, interval: 5}\n", `health.interval: "5" is not a duration`},
		{minimal + "restart: {backoff_min: 1ms}\n", "restart.backoff_min: 1ms: want 100ms to 1h0m0s"},
		{minimal + "restart: {backoff_min: 2m}\n", "restart.backoff_max: 1m0s: want restart.backoff_min (2m0s) to 1h0m0s"},
		{minimal + "selector: {\"bad key\": x}\n", `selector.bad key: "bad key" is not a label key`},
		{minimal + "strategy: {type: blue-green}\n", `strategy.type: "blue-green": want rolling`},
		{minimal + "strategy: {batch: 0%}\n", `strategy.batch: batch size "0%"`},
		{minimal + "strategy: {batch: 0}\n", `strategy.batch: batch size "0"`},
		{minimal + "strategy: {max_unavailable: -1}\n", "strategy.max_unavailable: -1: must not be negative"},
		{minimal + "strategy: {pause: 25h}\n", "strategy.pause: 25h0m0s: want 0 to 24h0m0s"},
		{minimal + "strategy: {health_timeout: 0s}\n", "strategy.health_timeout: 0s: want 1s to 24h0m0s"},
		{minimal + "strategy: 5\n", `strategy: want a mapping of keys, got "5"`},
	} {
		t.Run(tc.want, func(t *testing.T) {
			s, err := Parse([]byte(tc.in))
			if err == nil {
				t.Fatalf("Parse accepted %q: %+v", tc.in, s)
			}
			problemsOf(t, err)
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestParseAcceptsValidVariants(t *testing.T) {
	for _, in := range []string{
		minimal + "user: \"1000\"\n",
		minimal + "user: 1000\n",
		minimal + "user: _svc-1\n",
		minimal + "resources: {cpu: 0, memory: 0}\n",
		minimal + "ports: [22]\nhealth: {tcp: {port: 22}, timeout: 10s}\n",
		minimal + "health: {exec: {command: [/bin/check, \"\"]}}\n",
		minimal + "strategy: {batch: 100%, pause: 24h, health_timeout: 1s}\n",
		minimal + "selector: {example.com/zone: a, site: \"\"}\n",
		minimal + "env: {_A: \"\", b1: x, EMPTY: ~}\nargs: []\n",
		"name: a\nartifact: a.b_c@1.0.0-rc.1\n",
		minimal + "args: [&port \"8081\"]\nenv: {PORT: *port}\n",
		"# just a comment\n" + minimal,
	} {
		if _, err := Parse([]byte(in)); err != nil {
			t.Errorf("Parse(%q): %v", in, err)
		}
	}
}

func TestOversizeInput(t *testing.T) {
	pad := "# " + strings.Repeat("x", 100) + "\n"
	big := minimal + strings.Repeat(pad, MaxBytes/len(pad)+1)
	if _, err := Parse([]byte(big)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Parse(%d bytes) = %v, want ErrTooLarge", len(big), err)
	}
	// Exactly at the limit is fine.
	atLimit := minimal + strings.Repeat(pad, (MaxBytes-len(minimal))/len(pad))
	atLimit += strings.Repeat("\n", MaxBytes-len(atLimit))
	if len(atLimit) != MaxBytes {
		t.Fatalf("test bug: %d bytes", len(atLimit))
	}
	if _, err := Parse([]byte(atLimit)); err != nil {
		t.Fatalf("Parse(%d bytes): %v", len(atLimit), err)
	}
}

func TestRevision(t *testing.T) {
	base := mustParse(t, string(readFile(t, "full.yaml")))
	rev := base.Revision()
	if len(rev) != RevisionLen || strings.Trim(rev, "0123456789abcdef") != "" {
		t.Fatalf("Revision() = %q", rev)
	}
	if base.Revision() != rev {
		t.Fatal("Revision not stable across calls")
	}

	// Key order, map order, port order, flow or block style, quantity
	// notation and explicit defaults do not change it.
	reordered := `
strategy:
  health_timeout: 300s
  pause: 0.5m
  max_unavailable: 0
  batch: "10%"
  type: rolling
selector: {tier: edge, site: plant-1}
restart: {backoff_max: 30s, backoff_min: 2000ms, policy: on-failure}
health:
  failure_threshold: 4
  timeout: 1s
  interval: 5s
  http: {path: /healthz, port: 8081}
resources: {memory: 67108864, cpu: 0.2}
user: outpost-svc
ports: [9090, 8081]
env: {PORT: "8081", LOG_LEVEL: info}
args: [--listen, ":8081"]
artifact: thermo-api@1.2.0
name: thermo-api
`
	if r := mustParse(t, reordered).Revision(); r != rev {
		t.Errorf("reordered spec has revision %s, want %s", r, rev)
	}
	if r := mustParse(t, minimal).Revision(); r != mustParse(t, minimal+"restart: {policy: always}\nstrategy: {batch: 25%}\n").Revision() {
		t.Errorf("explicit defaults changed the revision")
	}

	// Every field changes it.
	changes := map[string]func(*Spec){
		"name":                     func(s *Spec) { s.Name = "thermo-api2" },
		"artifact":                 func(s *Spec) { s.Artifact = "thermo-api@1.2.1" },
		"args":                     func(s *Spec) { s.Args = []string{":8081", "--listen"} },
		"args appended":            func(s *Spec) { s.Args = append(slices.Clone(s.Args), "-v") },
		"env value":                func(s *Spec) { s.Env = map[string]string{"LOG_LEVEL": "debug", "PORT": "8081"} },
		"env key":                  func(s *Spec) { s.Env = map[string]string{"LOG_LEVEL": "info", "PORTS": "8081"} },
		"ports":                    func(s *Spec) { s.Ports = []int{8081, 9091} },
		"user":                     func(s *Spec) { s.User = "other" },
		"resources.cpu":            func(s *Spec) { s.Resources.CPU = 201 },
		"resources.memory":         func(s *Spec) { s.Resources.Memory++ },
		"health removed":           func(s *Spec) { s.Health = nil },
		"health.http.port":         func(s *Spec) { h := *s.Health; h.HTTP = &HTTPCheck{Port: 9090, Path: "/healthz"}; s.Health = &h },
		"health.http.path":         func(s *Spec) { h := *s.Health; h.HTTP = &HTTPCheck{Port: 8081, Path: "/"}; s.Health = &h },
		"health kind":              func(s *Spec) { h := *s.Health; h.HTTP, h.TCP = nil, &TCPCheck{Port: 8081}; s.Health = &h },
		"health.interval":          func(s *Spec) { h := *s.Health; h.Interval = Duration(6 * time.Second); s.Health = &h },
		"health.timeout":           func(s *Spec) { h := *s.Health; h.Timeout = Duration(2 * time.Second); s.Health = &h },
		"health.failure_threshold": func(s *Spec) { h := *s.Health; h.FailureThreshold = 3; s.Health = &h },
		"restart.policy":           func(s *Spec) { s.Restart.Policy = RestartAlways },
		"restart.backoff_min":      func(s *Spec) { s.Restart.BackoffMin = Duration(time.Second) },
		"restart.backoff_max":      func(s *Spec) { s.Restart.BackoffMax = Duration(time.Minute) },
		"selector value":           func(s *Spec) { s.Selector = map[string]string{"site": "plant-2", "tier": "edge"} },
		"selector removed":         func(s *Spec) { s.Selector = nil },
		"strategy.type":            func(s *Spec) { s.Strategy.Type = "other" },
		"strategy.batch percent":   func(s *Spec) { s.Strategy.Batch = Batch{Percent: 11} },
		"strategy.batch count":     func(s *Spec) { s.Strategy.Batch = Batch{Count: 10} },
		"strategy.max_unavailable": func(s *Spec) { s.Strategy.MaxUnavailable = 1 },
		"strategy.pause":           func(s *Spec) { s.Strategy.Pause = 0 },
		"strategy.health_timeout":  func(s *Spec) { s.Strategy.HealthTimeout = Duration(time.Minute) },
	}
	seen := map[string]string{rev: "base"}
	for name, change := range changes {
		s := base
		change(&s)
		r := s.Revision()
		if other, dup := seen[r]; dup {
			t.Errorf("changing %s gives revision %s, the same as %s", name, r, other)
		}
		seen[r] = name
		if s.Equal(base) {
			t.Errorf("changing %s: still Equal", name)
		}
	}
	if base.Revision() != rev {
		t.Fatal("changes leaked into the base spec")
	}
}
