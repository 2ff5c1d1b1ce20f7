package ota

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/outpost-edge/outpost/internal/atomicfile"
	"github.com/outpost-edge/outpost/internal/buildinfo"
)

// Defaults for Config.
const (
	DefaultMinThroughput    = 1024 // bytes per second
	DefaultThroughputWindow = 30 * time.Second
	DefaultMaxDownloadTime  = time.Hour
	DefaultRefreshTimeout   = 2 * time.Minute
	DefaultSyncEvery        = 1 << 20 // bytes
)

// Artifact types a target's custom metadata may name.
const (
	TypeAgent   = "agent"
	TypeFile    = "file"
	TypeService = "service"
)

// PlatformAny is the platform of an artifact that runs everywhere.
const PlatformAny = "any"

// Config configures a Client. Zero durations and limits take the defaults.
type Config struct {
	// HubURL is the hub's base URL (https://hub:8443); metadata is read
	// from HubURL/tuf/metadata/ and targets from HubURL/tuf/targets/.
	HubURL string
	// CoAPURL, if set, is the hub's CoAP address (coap://hub:5683): metadata
	// refreshes and target downloads then use CoAP block-wise transfers
	// (docs/agent-ota.md) instead of HubURL, for constrained links.
	CoAPURL string
	// DeviceID and Password (the device's MQTT password) are sent as HTTP
	// Basic auth on every request, or as the CoAP URI-Query options d= and
	// p= over CoAP.
	DeviceID string
	Password string
	// DataDir is the agent's data directory; this package keeps its state
	// under DataDir/ota.
	DataDir string
	// TrustedRoot is the root.json received at join. It is used only when
	// DataDir/ota/tuf/root.json does not exist yet; after that the newest
	// root go-tuf persisted there is trusted.
	TrustedRoot []byte
	// HTTPClient makes every request; nil means a client using Transport.
	// Its Timeout should be zero: downloads are bounded by the limits below.
	HTTPClient *http.Client
	// Transport is used when HTTPClient is nil; nil means
	// http.DefaultTransport.
	Transport http.RoundTripper
	// Logger receives progress and failures; nil discards.
	Logger *slog.Logger
	// MinThroughput is the lowest average download speed, in bytes per
	// second over each ThroughputWindow, below which a download fails with
	// ReasonTooSlow. Default 1024.
	MinThroughput int64
	// ThroughputWindow is the window MinThroughput is averaged over.
	// Default 30s.
	ThroughputWindow time.Duration
	// MaxDownloadTime bounds one Download call. Default 1h.
	MaxDownloadTime time.Duration
	// RefreshTimeout bounds one Refresh call. Default 2m.
	RefreshTimeout time.Duration
	// SyncEvery is how many downloaded bytes may be written between fsyncs
	// of the checkpoint. Default 1 MiB.
	SyncEvery int64
	// Now is the clock TUF expiry is checked against; nil means time.Now.
	Now func() time.Time
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.HubURL == "" {
		errs = append(errs, errors.New("HubURL is required"))
	} else if u, err := url.Parse(c.HubURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("HubURL %q is not an http(s) URL", c.HubURL))
	}
	if c.CoAPURL != "" {
		if err := ValidateCoAPURL(c.CoAPURL); err != nil {
			errs = append(errs, fmt.Errorf("CoAPURL: %w", err))
		} else if !CoAPSupported {
			errs = append(errs, errors.New("CoAPURL: this agent was built without CoAP; build it with -tags coap"))
		}
	}
	if c.DeviceID == "" {
		errs = append(errs, errors.New("DeviceID is required"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("DataDir is required"))
	}
	for name, v := range map[string]int64{
		"MinThroughput": c.MinThroughput, "ThroughputWindow": int64(c.ThroughputWindow),
		"MaxDownloadTime": int64(c.MaxDownloadTime), "RefreshTimeout": int64(c.RefreshTimeout),
		"SyncEvery": c.SyncEvery,
	} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative", name))
		}
	}
	return errors.Join(errs...)
}

func (c *Config) setDefaults() {
	if c.MinThroughput == 0 {
		c.MinThroughput = DefaultMinThroughput
	}
	if c.ThroughputWindow == 0 {
		c.ThroughputWindow = DefaultThroughputWindow
	}
	if c.MaxDownloadTime == 0 {
		c.MaxDownloadTime = DefaultMaxDownloadTime
	}
	if c.RefreshTimeout == 0 {
		c.RefreshTimeout = DefaultRefreshTimeout
	}
	if c.SyncEvery == 0 {
		c.SyncEvery = DefaultSyncEvery
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HTTPClient == nil {
		t := c.Transport
		if t == nil {
			t = http.DefaultTransport
		}
		c.HTTPClient = &http.Client{Transport: t}
	}
	c.HubURL = strings.TrimRight(c.HubURL, "/")
	c.CoAPURL = strings.TrimRight(c.CoAPURL, "/")
}

// ValidateCoAPURL checks that u is coap://host:port with nothing after
// the address.
func ValidateCoAPURL(u string) error {
	pu, err := url.Parse(u)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %w", u, err)
	}
	if pu.Scheme != "coap" {
		return fmt.Errorf("%q: want scheme coap:// (coaps/DTLS is not supported)", u)
	}
	host, port, err := net.SplitHostPort(pu.Host)
	if err != nil || host == "" || port == "" {
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

// Client is the agent's OTA client. Its methods are safe for concurrent
// use; Refresh and Lookup serialise on one lock, Downloads on another.
type Client struct {
	cfg    Config
	log    *slog.Logger
	tufDir string
	dlDir  string

	// mu guards up and the installed-versions file.
	mu sync.Mutex
	// up is the updater of the last successful Refresh; nil before the
	// first one and after a failed one.
	up *updater.Updater

	// dlMu serialises downloads, so two calls never share a .part file.
	dlMu sync.Mutex
}

// New returns a Client. It creates DataDir/ota and checks that a trusted
// root is available, either already in DataDir/ota/tuf/root.json or in
// cfg.TrustedRoot, which it then stores there.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, &Error{Reason: ReasonInvalid, Err: fmt.Errorf("ota config: %w", err)}
	}
	cfg.setDefaults()
	c := &Client{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "ota"),
		tufDir: filepath.Join(cfg.DataDir, "ota", "tuf"),
		dlDir:  filepath.Join(cfg.DataDir, "ota", "downloads"),
	}
	for _, d := range []string{c.tufDir, c.dlDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, &Error{Reason: ReasonIO, Err: fmt.Errorf("creating %s: %w", d, err)}
		}
	}
	rootPath := filepath.Join(c.tufDir, "root.json")
	if _, err := os.Stat(rootPath); errors.Is(err, os.ErrNotExist) {
		if len(cfg.TrustedRoot) == 0 {
			return nil, newErr(ReasonInvalid, "no trusted root: %s does not exist and Config.TrustedRoot is empty", rootPath)
		}
		if _, err := metadata.Root().FromBytes(cfg.TrustedRoot); err != nil {
			return nil, newErr(ReasonInvalid, "parsing trusted root: %w", err)
		}
		if err := atomicfile.Write(rootPath, cfg.TrustedRoot, 0o600); err != nil {
			return nil, newErr(ReasonIO, "storing trusted root: %w", err)
		}
	} else if err != nil {
		return nil, newErr(ReasonIO, "checking trusted root: %w", err)
	}
	return c, nil
}

// Refresh updates the trusted TUF metadata from the hub: root (following
// rotations), timestamp, snapshot and targets, with every check of the TUF
// client workflow. On failure the previous metadata is no longer used:
// Lookup fails until a Refresh succeeds.
func (c *Client) Refresh(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.up = nil
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RefreshTimeout)
	defer cancel()

	root, err := os.ReadFile(filepath.Join(c.tufDir, "root.json"))
	if err != nil {
		return newErr(ReasonIO, "reading trusted root: %w", err)
	}
	f := &tufFetcher{ctx: ctx, c: c}
	base := c.cfg.HubURL
	if c.cfg.CoAPURL != "" {
		base = c.cfg.CoAPURL
		f.coap = c.newCoAPFetcher(ctx)
	}
	ucfg, err := config.New(base+"/tuf/metadata/", root)
	if err != nil {
		return newErr(ReasonInvalid, "configuring TUF updater: %w", err)
	}
	ucfg.LocalMetadataDir = c.tufDir
	ucfg.LocalTargetsDir = c.dlDir
	ucfg.RemoteTargetsURL = base + "/tuf/targets/"
	ucfg.PrefixTargetsWithHash = true
	ucfg.Fetcher = f
	up, err := updater.New(ucfg)
	if err != nil {
		return &Error{Reason: classifyTUF(err, ReasonInvalid), Err: fmt.Errorf("loading trusted root: %w", err)}
	}
	up.UnsafeSetRefTime(c.cfg.Now().UTC())
	if err := up.Refresh(); err != nil {
		reason := classifyTUF(err, f.badVersionReason(up))
		c.log.Warn("TUF refresh failed", "reason", reason, "err", err)
		return &Error{Reason: reason, Err: fmt.Errorf("refreshing TUF metadata: %w", err)}
	}
	c.up = up
	tm := up.GetTrustedMetadataSet()
	c.log.Debug("TUF metadata refreshed", "root", tm.Root.Signed.Version,
		"timestamp", tm.Timestamp.Signed.Version, "snapshot", tm.Snapshot.Signed.Version,
		"targets", tm.Targets[metadata.TARGETS].Signed.Version)
	return nil
}

// ArtifactMeta is the signed custom metadata of a target, under the key
// "outpost".
type ArtifactMeta struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	Type     string `json:"type"`
	Platform string `json:"platform"`
}

// Target is a signed artifact found by Lookup.
type Target struct {
	// Path is the TUF target path: name/version/platform.
	Path string
	// Meta is the signed custom metadata.
	Meta ArtifactMeta
	// Length is the signed length in bytes.
	Length int64
	// SHA256 is the signed sha256 hash, hex encoded; it names the
	// download on disk and on the hub.
	SHA256 string
	// File is go-tuf's signed target info, used to verify the download.
	File *metadata.TargetFiles
}

// LookupOption changes what Lookup accepts.
type LookupOption func(*lookupOptions)

type lookupOptions struct {
	allowDowngrade bool
	installed      string
}

// AllowDowngrade lets Lookup return a version older than or equal to the
// installed one (an operator-requested rollback).
func AllowDowngrade() LookupOption { return func(o *lookupOptions) { o.allowDowngrade = true } }

// Installed tells Lookup which version is installed, overriding what
// MarkInstalled recorded (the agent knows its own version best).
func Installed(version string) LookupOption {
	return func(o *lookupOptions) { o.installed = version }
}

// Lookup finds the signed target name/version/platform, or failing that
// name/version/any, in the metadata of the last successful Refresh. It
// refuses (ReasonRollback) a version older than or equal to the installed
// one unless AllowDowngrade is given, and (ReasonUnsigned) anything the
// signed targets metadata does not list.
func (c *Client) Lookup(name, version, platform string, opts ...LookupOption) (*Target, error) {
	var o lookupOptions
	for _, opt := range opts {
		opt(&o)
	}
	for what, s := range map[string]string{"name": name, "version": version, "platform": platform} {
		if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "/\\") {
			return nil, newErr(ReasonInvalid, "looking up artifact: bad %s %q", what, s)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.up == nil {
		return nil, newErr(ReasonIO, "looking up %s %s: no trusted metadata (Refresh has not succeeded)", name, version)
	}
	targets := c.up.GetTopLevelTargets()
	var tf *metadata.TargetFiles
	candidates := append(buildinfo.PlatformCandidates(platform), PlatformAny)
	for _, p := range candidates {
		if t, ok := targets[name+"/"+version+"/"+p]; ok {
			tf = t
			break
		}
	}
	if tf == nil {
		return nil, newErr(ReasonUnsigned, "looking up %s %s for %s: not in the signed targets metadata", name, version, platform)
	}
	t, err := targetFromFile(tf)
	if err != nil {
		return nil, err
	}
	if t.Meta.Name != name || t.Meta.Version != version || !slices.Contains(candidates, t.Meta.Platform) {
		return nil, newErr(ReasonInvalid, "target %s: signed custom metadata names %s %s %s", tf.Path, t.Meta.Name, t.Meta.Version, t.Meta.Platform)
	}
	installed := o.installed
	if installed == "" {
		m, err := c.readInstalled()
		if err != nil {
			return nil, err
		}
		installed = m[name]
	}
	if installed != "" && !o.allowDowngrade && CompareVersions(version, installed) <= 0 {
		return nil, newErr(ReasonRollback, "refusing %s %s: not newer than installed version %s", name, version, installed)
	}
	return t, nil
}

// targetFromFile checks a signed target's custom metadata and hashes.
func targetFromFile(tf *metadata.TargetFiles) (*Target, error) {
	t := &Target{Path: tf.Path, Length: tf.Length, File: tf}
	if tf.Custom == nil {
		return nil, newErr(ReasonInvalid, "target %s: no custom metadata", tf.Path)
	}
	var custom struct {
		Outpost *ArtifactMeta `json:"outpost"`
	}
	if err := json.Unmarshal(*tf.Custom, &custom); err != nil || custom.Outpost == nil {
		return nil, newErr(ReasonInvalid, "target %s: no valid \"outpost\" custom metadata (%v)", tf.Path, err)
	}
	t.Meta = *custom.Outpost
	switch t.Meta.Type {
	case TypeAgent, TypeFile, TypeService:
	default:
		return nil, newErr(ReasonInvalid, "target %s: unknown artifact type %q", tf.Path, t.Meta.Type)
	}
	h, ok := tf.Hashes["sha256"]
	if !ok || len(h) != 32 {
		return nil, newErr(ReasonInvalid, "target %s: no sha256 hash", tf.Path)
	}
	if tf.Length < 0 {
		return nil, newErr(ReasonInvalid, "target %s: negative length", tf.Path)
	}
	t.SHA256 = hex.EncodeToString(h)
	return t, nil
}

// installedPath is the file MarkInstalled writes.
func (c *Client) installedPath() string {
	return filepath.Join(c.cfg.DataDir, "ota", "installed.json")
}

// readInstalled reads the installed versions; the caller holds c.mu.
func (c *Client) readInstalled() (map[string]string, error) {
	m := map[string]string{}
	b, err := os.ReadFile(c.installedPath())
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, newErr(ReasonIO, "reading installed versions: %w", err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, newErr(ReasonIO, "parsing %s: %w", c.installedPath(), err)
	}
	return m, nil
}

// MarkInstalled records that version of the artifact name is installed;
// Lookup refuses versions not newer than it. Call it after an install
// succeeded.
func (c *Client) MarkInstalled(name, version string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, err := c.readInstalled()
	if err != nil {
		return err
	}
	m[name] = version
	b, err := json.Marshal(m)
	if err != nil {
		return newErr(ReasonIO, "encoding installed versions: %w", err)
	}
	if err := atomicfile.Write(c.installedPath(), b, 0o600); err != nil {
		return newErr(ReasonIO, "writing installed versions: %w", err)
	}
	return nil
}

// InstalledVersion returns the version MarkInstalled recorded for name.
func (c *Client) InstalledVersion(name string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, err := c.readInstalled()
	if err != nil {
		return "", err
	}
	return m[name], nil
}

// get sends an authenticated GET.
func (c *Client) get(ctx context.Context, u string, hdr http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.SetBasicAuth(c.cfg.DeviceID, c.cfg.Password)
	return c.cfg.HTTPClient.Do(req)
}

// tufFetcher is go-tuf's Fetcher for one Refresh: authenticated, bound to
// the Refresh's context, remembering the last metadata it fetched so that
// a failure can be classified.
type tufFetcher struct {
	ctx context.Context
	c   *Client
	// coap, when set, fetches over CoAP instead of HTTP.
	coap fetcher.Fetcher

	lastRole string
	lastData []byte
}

// DownloadFile implements fetcher.Fetcher.
func (f *tufFetcher) DownloadFile(u string, maxLength int64, _ time.Duration) ([]byte, error) {
	base := u[strings.LastIndex(u, "/")+1:]
	parts := strings.Split(strings.TrimSuffix(base, ".json"), ".")
	f.lastRole, f.lastData = parts[len(parts)-1], nil
	if f.coap != nil {
		data, err := f.coap.DownloadFile(u, maxLength, 0)
		if err != nil {
			return nil, err
		}
		f.lastData = data
		return data, nil
	}
	res, err := f.c.get(f.ctx, u, nil)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, &metadata.ErrDownloadHTTP{StatusCode: res.StatusCode, URL: u}
	}
	if res.ContentLength > maxLength {
		return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s: length %d is larger than the limit %d", u, res.ContentLength, maxLength)}
	}
	data, err := io.ReadAll(io.LimitReader(res.Body, maxLength+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > maxLength {
		return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s: more than the limit of %d bytes", u, maxLength)}
	}
	f.lastData = data
	return data, nil
}

// badVersionReason tells what a go-tuf ErrBadVersionNumber meant, from
// the role fetched last: a timestamp or root whose version went backwards
// is a rollback; a snapshot whose version differs from the one the
// timestamp names, or a targets whose version differs from the one the
// snapshot names, is mix-and-match; a snapshot with the named version that
// still failed lists a targets version lower than one already trusted,
// which is a rollback.
func (f *tufFetcher) badVersionReason(up *updater.Updater) Reason {
	switch f.lastRole {
	case metadata.TARGETS:
		return ReasonMixAndMatch
	case metadata.SNAPSHOT:
		tm := up.GetTrustedMetadataSet()
		s, err := metadata.Snapshot().FromBytes(f.lastData)
		if err != nil || tm.Timestamp == nil {
			return ReasonMixAndMatch
		}
		if s.Signed.Version != tm.Timestamp.Signed.Meta[metadata.SNAPSHOT+".json"].Version {
			return ReasonMixAndMatch
		}
		return ReasonRollback
	}
	return ReasonRollback
}

// StoreTrustedRoot makes root the agent's trusted TUF root, as a join
// does: metadata trusted before (from an earlier join, perhaps to another
// hub) is discarded. A nil root (the hub had no update keys yet) only
// discards; the agent then fetches the hub's first root at its first
// update (see docs/agent-ota.md).
func StoreTrustedRoot(dataDir string, root []byte) error {
	dir := filepath.Join(dataDir, "ota", "tuf")
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("discarding earlier update metadata: %w", err)
	}
	if len(root) == 0 {
		return nil
	}
	if _, err := metadata.Root().FromBytes(root); err != nil {
		return fmt.Errorf("the hub's TUF root is not valid root metadata: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	if err := atomicfile.Write(filepath.Join(dir, "root.json"), root, 0o600); err != nil {
		return fmt.Errorf("storing the hub's TUF root: %w", err)
	}
	return nil
}
