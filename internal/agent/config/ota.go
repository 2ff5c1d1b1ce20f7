package config

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"time"

	"github.com/outpost-edge/outpost/internal/lazyre"
)

// OTA configures over-the-air updates (key ota): which artifacts this device
// installs where. The hub says what to install and when (jobs); the device
// decides where files go, so a job cannot write anywhere else.
type OTA struct {
	// AgentUpdates lets jobs of type "agent" update the agent itself
	// through its A/B slots (key ota.agent_updates). Default true.
	AgentUpdates *bool `yaml:"agent_updates,omitempty"`
	// CommitWindow is how long a new agent version has to connect and
	// pass its self-check before it is rolled back (key
	// ota.commit_window). Default 60s.
	CommitWindow Duration `yaml:"commit_window,omitempty"`
	// CoAPURL is the hub's CoAP address, coap://host:port (key
	// ota.coap_url; the hub's --coap flag). When set, update metadata and
	// artifacts are fetched over CoAP block-wise transfers instead of
	// hub_url, for constrained links. Default: empty (HTTP).
	CoAPURL string `yaml:"coap_url,omitempty"`
	// Files maps an artifact name to where jobs of type "file" install it
	// (key ota.files). An artifact not listed here is refused.
	Files map[string]OTAFile `yaml:"files,omitempty"`
}

// OTAFile is where an artifact of type "file" is installed.
type OTAFile struct {
	// Path is the absolute destination, replaced atomically.
	Path string `yaml:"path"`
	// Mode is the file mode, e.g. 0644 (default 0644).
	Mode uint32 `yaml:"mode,omitempty"`
	// PostInstall is a command run after the file is in place, e.g.
	// ["systemctl", "restart", "inference"]; its failure fails the job.
	PostInstall []string `yaml:"post_install,omitempty"`
	// PostInstallTimeout bounds PostInstall (default 30s).
	PostInstallTimeout Duration `yaml:"post_install_timeout,omitempty"`
}

// DefaultCommitWindow is the default ota.commit_window.
const DefaultCommitWindow = 60 * time.Second

// AgentUpdatesEnabled reports ota.agent_updates with its default.
func (o OTA) AgentUpdatesEnabled() bool { return o.AgentUpdates == nil || *o.AgentUpdates }

// Window returns ota.commit_window with its default.
func (o OTA) Window() time.Duration {
	if o.CommitWindow == 0 {
		return DefaultCommitWindow
	}
	return o.CommitWindow.D()
}

// FileMode returns the mode with its default.
func (f OTAFile) FileMode() uint32 {
	if f.Mode == 0 {
		return 0o644
	}
	return f.Mode
}

// Timeout returns post_install_timeout with its default.
func (f OTAFile) Timeout() time.Duration {
	if f.PostInstallTimeout == 0 {
		return 30 * time.Second
	}
	return f.PostInstallTimeout.D()
}

var artifactNameRE = lazyre.New(`^[a-z0-9][a-z0-9._-]{0,63}$`)

func (o OTA) validate() []error {
	var errs []error
	if o.CommitWindow != 0 && (o.CommitWindow.D() < 5*time.Second || o.CommitWindow.D() > time.Hour) {
		errs = append(errs, fmt.Errorf("ota.commit_window: 5s to 1h, got %s", o.CommitWindow))
	}
	if o.CoAPURL != "" {
		if err := validateCoAPURL(o.CoAPURL); err != nil {
			errs = append(errs, fmt.Errorf("ota.coap_url: %w", err))
		}
	}
	for name, f := range o.Files {
		key := "ota.files." + name
		if !artifactNameRE().MatchString(name) {
			errs = append(errs, fmt.Errorf("%s: artifact names are 1–64 of a-z 0-9 . _ -", key))
		}
		if f.Path == "" || !filepath.IsAbs(f.Path) || filepath.Clean(f.Path) != f.Path {
			errs = append(errs, fmt.Errorf("%s.path: want a clean absolute path, got %q", key, f.Path))
		}
		if f.Mode > 0o777 {
			errs = append(errs, fmt.Errorf("%s.mode: want permission bits such as 0644, got %#o", key, f.Mode))
		}
		if f.PostInstallTimeout < 0 {
			errs = append(errs, fmt.Errorf("%s.post_install_timeout: must not be negative", key))
		}
	}
	return errs
}

// validateCoAPURL checks that u is coap://host:port with nothing after
// the address.
func validateCoAPURL(u string) error {
	pu, err := url.Parse(u)
	if err != nil {
		return fmt.Errorf("%q is not a URL", u)
	}
	if pu.Scheme != "coap" {
		return fmt.Errorf("%q: want scheme coap:// (DTLS is not supported)", u)
	}
	host, port, err := net.SplitHostPort(pu.Host)
	if err != nil || host == "" {
		return fmt.Errorf("%q: want coap://host:port", u)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: bad port %q", u, port)
	}
	if (pu.Path != "" && pu.Path != "/") || pu.RawQuery != "" || pu.Fragment != "" || pu.User != nil {
		return fmt.Errorf("%q: want coap://host:port with no path, query or credentials", u)
	}
	return nil
}
