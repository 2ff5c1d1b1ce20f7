package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/atomicfile"
	"github.com/spf13/cobra"
)

// Environment variables read by the client commands.
const (
	envHub       = "OUTPOST_HUB"
	envToken     = "OUTPOST_TOKEN"
	envConfigDir = "OUTPOST_CONFIG_DIR"

	defaultHub    = "http://127.0.0.1:8080"
	loginFileName = "login.json"
)

// globals holds the persistent flags shared by every outpost subcommand and
// the writers the commands print to.
type globals struct {
	stdout, stderr io.Writer

	// hub and token are the raw values of --hub and --token; use target to
	// apply the flag > env > saved login precedence.
	hub, token string
	// output is "table" or "json"; outputFlag validates it while parsing.
	output string

	// now is the clock used for relative times such as "3s ago".
	now func() time.Time
}

// register adds the persistent flags to root.
func (g *globals) register(root *cobra.Command) {
	g.output = "table"
	if g.now == nil {
		g.now = time.Now
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.hub, "hub", "",
		"hub URL (default $"+envHub+", else the saved login, else "+defaultHub+")")
	pf.StringVar(&g.token, "token", "",
		"API token (default $"+envToken+", else the saved login for this hub)")
	pf.VarP((*outputFlag)(&g.output), "output", "o", `output format: "table" or "json"`)
}

// outputFlag is the -o/--output flag; Set rejects unknown formats so every
// command reports a bad value before doing anything.
type outputFlag string

func (o *outputFlag) String() string { return string(*o) }
func (o *outputFlag) Type() string   { return "format" }

func (o *outputFlag) Set(s string) error {
	switch s {
	case "table", "json":
		*o = outputFlag(s)
		return nil
	}
	return fmt.Errorf(`unknown output format %q: use "table" or "json"`, s)
}

// jsonOutput reports whether -o json was chosen.
func (g *globals) jsonOutput() bool { return g.output == "json" }

// target is the hub a client command talks to and the token it sends.
type target struct {
	hub   string
	token string
	// saved is the saved login the token came from, nil if the token came
	// from --token or the environment.
	saved *savedLogin
}

// resolveHub returns the hub URL by precedence flag > env > saved login >
// default, and the saved login if one was read.
func (g *globals) resolveHub(cmd *cobra.Command) (string, *savedLogin, error) {
	var saved *savedLogin
	raw, from := g.hub, "--hub"
	if !cmd.Flags().Changed("hub") {
		raw, from = os.Getenv(envHub), envHub
		if raw == "" {
			s, err := loadLogin()
			if err != nil {
				return "", nil, err
			}
			saved = s
			raw, from = defaultHub, "default hub"
			if s != nil && s.Hub != "" {
				raw, from = s.Hub, "saved login"
			}
		}
	}
	hub, err := normalizeHub(raw)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", from, err)
	}
	return hub, saved, nil
}

// target resolves hub and token by precedence flag > env > saved login. The
// saved token is only sent to the hub it was issued by.
func (g *globals) target(cmd *cobra.Command) (target, error) {
	hub, saved, err := g.resolveHub(cmd)
	if err != nil {
		return target{}, err
	}
	t := target{hub: hub}
	switch {
	case cmd.Flags().Changed("token"):
		t.token = g.token
	case os.Getenv(envToken) != "":
		t.token = os.Getenv(envToken)
	default:
		if saved == nil {
			if saved, err = loadLogin(); err != nil {
				return target{}, err
			}
		}
		if saved != nil && saved.Token != "" && sameHub(saved.Hub, hub) {
			t.token, t.saved = saved.Token, saved
		}
	}
	if t.token == "" {
		return target{}, fmt.Errorf(`not logged in to %s: run "outpost login --hub %s" or set %s`, hub, hub, envToken)
	}
	if t.saved != nil && !t.saved.ExpiresAt.IsZero() && !g.now().Before(t.saved.ExpiresAt) {
		return target{}, fmt.Errorf(`saved login for %s expired at %s: run "outpost login"`,
			hub, t.saved.ExpiresAt.Format(time.RFC3339))
	}
	return t, nil
}

// client returns a REST client for the resolved hub and token.
func (g *globals) client(cmd *cobra.Command) (*client, error) {
	t, err := g.target(cmd)
	if err != nil {
		return nil, err
	}
	return newClient(t.hub, t.token), nil
}

// normalizeHub checks that s is an http(s) URL and trims a trailing slash. A
// bare host:port gets http:// in front.
func normalizeHub(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("hub URL is empty")
	}
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("invalid hub URL %q: %w", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("invalid hub URL %q: scheme must be http or https", s)
	}
	if u.Host == "" {
		return "", fmt.Errorf("invalid hub URL %q: no host", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("invalid hub URL %q: no user, query or fragment allowed", s)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// sameHub reports whether a and b name the same hub once normalized.
func sameHub(a, b string) bool {
	na, errA := normalizeHub(a)
	nb, errB := normalizeHub(b)
	return errA == nil && errB == nil && na == nb
}

// savedLogin is the content of login.json written by "outpost login".
type savedLogin struct {
	Hub       string    `json:"hub"`
	User      string    `json:"user,omitempty"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// configDir returns $OUTPOST_CONFIG_DIR, else the user config dir/outpost.
func configDir() (string, error) {
	if d := os.Getenv(envConfigDir); d != "" {
		return d, nil
	}
	d, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("finding config directory (set %s): %w", envConfigDir, err)
	}
	return filepath.Join(d, "outpost"), nil
}

// loginPath returns the path of the saved login file.
func loginPath() (string, error) {
	d, err := configDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, loginFileName), nil
}

// maxLoginFile bounds how much of login.json is read.
const maxLoginFile = 64 << 10

// loadLogin reads the saved login; it returns nil, nil when there is none.
func loadLogin() (*savedLogin, error) {
	p, err := loginPath()
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading saved login: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxLoginFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading saved login %s: %w", p, err)
	}
	if len(data) > maxLoginFile {
		return nil, fmt.Errorf("reading saved login %s: file larger than %d bytes", p, maxLoginFile)
	}
	var s savedLogin
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf(`reading saved login %s: %w (run "outpost login" again)`, p, err)
	}
	return &s, nil
}

// saveLogin writes s to login.json with mode 0600, atomically: a temporary
// file in the same directory is synced and renamed over the old one, so a
// crash leaves either the old or the new login, never half of one.
func saveLogin(s *savedLogin) (string, error) {
	p, err := loginPath()
	if err != nil {
		return "", err
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encoding login: %w", err)
	}
	data = append(data, '\n')
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("saving login: %w", err)
	}
	if err := atomicfile.Write(p, data, 0o600); err != nil {
		return "", fmt.Errorf("saving login: %w", err)
	}
	return p, nil
}
