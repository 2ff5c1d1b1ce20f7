package ota

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/atomicfile"
	"github.com/outpost-edge/outpost/internal/hub/periodic"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Lifetimes of the metadata the hub signs. Root's lifetime is chosen by the
// operator when signing it.
const (
	TargetsLifetime   = 90 * 24 * time.Hour
	SnapshotLifetime  = 7 * 24 * time.Hour
	TimestampLifetime = 24 * time.Hour

	// RefreshInterval is how often Run calls RefreshTimestamp.
	RefreshInterval = time.Hour
	// MaxRootBytes bounds an uploaded root.json (go-tuf's client default).
	MaxRootBytes = 512000
	// DefaultMaxArtifactBytes is the default artifact size limit.
	DefaultMaxArtifactBytes = 512 << 20
)

// Options configure the service.
type Options struct {
	// Dir is the repository directory, <hub data dir>/ota.
	Dir string
	// MaxArtifactBytes bounds a published artifact; 0: the default.
	MaxArtifactBytes int64
	Logger           *slog.Logger
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// Service is the hub's TUF repository. Its methods are safe for concurrent
// use: mu serialises every change to metadata and keys.
type Service struct {
	dir      string
	maxBytes int64
	logger   *slog.Logger
	now      func() time.Time

	// mu guards the files under metadata/ and keys/ and the published-at
	// index; readers of single files need not hold it (files are replaced
	// atomically).
	mu sync.Mutex
}

// New creates the repository directories if needed and returns the service.
func New(opts Options) (*Service, error) {
	if opts.Dir == "" {
		return nil, errors.New("ota: repository directory is empty")
	}
	s := &Service{dir: opts.Dir, maxBytes: opts.MaxArtifactBytes, logger: opts.Logger, now: opts.Now}
	if s.maxBytes <= 0 {
		s.maxBytes = DefaultMaxArtifactBytes
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	s.logger = s.logger.With("component", "ota")
	if s.now == nil {
		s.now = time.Now
	}
	for _, d := range []struct {
		name string
		mode os.FileMode
	}{{"", 0o700}, {"metadata", 0o755}, {"targets", 0o755}, {"keys", 0o700}} {
		p := filepath.Join(s.dir, d.name)
		if err := os.MkdirAll(p, d.mode); err != nil {
			return nil, fmt.Errorf("creating %s: %w", p, err)
		}
		if err := os.Chmod(p, d.mode); err != nil {
			return nil, fmt.Errorf("setting mode of %s: %w", p, err)
		}
	}
	return s, nil
}

// MaxArtifactBytes is the size limit of a published artifact.
func (s *Service) MaxArtifactBytes() int64 { return s.maxBytes }

func (s *Service) metaPath(name string) string { return filepath.Join(s.dir, "metadata", name) }

// metadataFileRE matches the metadata file names the repository serves.
var metadataFileRE = regexp.MustCompile(`^([1-9][0-9]{0,18}\.)?(root|targets|snapshot|timestamp)\.json$`)

// OpenMetadata opens metadata/{name} for reading. Names other than
// root.json, timestamp.json and N.{root,snapshot,targets}.json are
// ErrNotFound.
func (s *Service) OpenMetadata(name string) (*os.File, error) {
	if !metadataFileRE.MatchString(name) {
		return nil, fmt.Errorf("%w: metadata file %q", ErrNotFound, name)
	}
	return openRegular(s.metaPath(name))
}

// OpenTarget opens the blob served at targets/{p}, p being
// {name}/{version}/{hash}.{platform}. Paths that are not clean, relative
// and free of hidden segments are ErrNotFound.
func (s *Service) OpenTarget(p string) (*os.File, error) {
	if !cleanRelPath(p) {
		return nil, fmt.Errorf("%w: target %q", ErrNotFound, p)
	}
	return openRegular(filepath.Join(s.dir, "targets", filepath.FromSlash(p)))
}

// cleanRelPath reports whether p is a clean relative slash path without
// "..", empty or hidden segments.
func cleanRelPath(p string) bool {
	if p == "" || path.Clean(p) != p || path.IsAbs(p) || strings.ContainsAny(p, "\\\x00") || !filepath.IsLocal(filepath.FromSlash(p)) {
		return false
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || strings.HasPrefix(seg, ".") {
			return false
		}
	}
	return true
}

func openRegular(p string) (*os.File, error) {
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, filepath.Base(p))
	}
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: %s", ErrNotFound, filepath.Base(p))
	}
	return f, nil
}

// RootJSON returns the newest signed root.json, or false before keys init.
func (s *Service) RootJSON() ([]byte, bool) {
	data, err := os.ReadFile(s.metaPath("root.json"))
	if err != nil {
		return nil, false
	}
	return data, true
}

// loadRoot reads the newest root; nil, nil before keys init.
func (s *Service) loadRoot() (*metadata.Metadata[metadata.RootType], error) {
	data, err := os.ReadFile(s.metaPath("root.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading root.json: %w", err)
	}
	root, err := metadata.Root().FromBytes(data)
	if err != nil {
		return nil, fmt.Errorf("parsing stored root.json: %w", err)
	}
	return root, nil
}

// state is the current metadata of the online roles.
type state struct {
	root      *metadata.Metadata[metadata.RootType]
	targets   *metadata.Metadata[metadata.TargetsType]
	snapshot  *metadata.Metadata[metadata.SnapshotType]
	timestamp *metadata.Metadata[metadata.TimestampType]
}

// loadState reads root, timestamp and the snapshot and targets they name.
// Before the first signing, the online roles are nil. s.mu must be held.
func (s *Service) loadState() (*state, error) {
	root, err := s.loadRoot()
	if err != nil {
		return nil, err
	}
	if root == nil {
		return nil, ErrNotInitialised
	}
	st := &state{root: root}
	data, err := os.ReadFile(s.metaPath("timestamp.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading timestamp.json: %w", err)
	}
	if st.timestamp, err = metadata.Timestamp().FromBytes(data); err != nil {
		return nil, fmt.Errorf("parsing stored timestamp.json: %w", err)
	}
	sv := st.timestamp.Signed.Meta["snapshot.json"].Version
	if st.snapshot, err = metadata.Snapshot().FromFile(s.metaPath(fmt.Sprintf("%d.snapshot.json", sv))); err != nil {
		return nil, fmt.Errorf("reading snapshot version %d: %w", sv, err)
	}
	tv := st.snapshot.Signed.Meta["targets.json"].Version
	if st.targets, err = metadata.Targets().FromFile(s.metaPath(fmt.Sprintf("%d.targets.json", tv))); err != nil {
		return nil, fmt.Errorf("reading targets version %d: %w", tv, err)
	}
	return st, nil
}

// PutRoot verifies and stores a new root signed offline: it must be signed
// by its own root threshold and, after the first, by the previous root's
// threshold, have the next version, list the hub's online keys, use
// consistent snapshots and not be expired. The hub then re-signs targets,
// snapshot and timestamp with the keys it lists.
func (s *Service) PutRoot(data []byte) (int64, error) {
	if len(data) > MaxRootBytes {
		return 0, fmt.Errorf("%w: root.json over %d bytes", ErrRootRejected, MaxRootBytes)
	}
	root, err := metadata.Root().FromBytes(data)
	if err != nil {
		return 0, fmt.Errorf("%w: parsing root metadata: %v", ErrRootRejected, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	prev, err := s.loadRoot()
	if err != nil {
		return 0, err
	}
	var prevVersion int64
	if prev != nil {
		prevVersion = prev.Signed.Version
	}
	if root.Signed.Version != prevVersion+1 {
		return 0, fmt.Errorf("%w: version %d, want %d (the current root is version %d)", ErrRootVersion, root.Signed.Version, prevVersion+1, prevVersion)
	}
	if err := checkRoot(root, now); err != nil {
		return 0, err
	}
	if prev != nil {
		if err := prev.VerifyDelegate(metadata.ROOT, root); err != nil {
			return 0, fmt.Errorf("%w: not signed by the threshold of root keys of version %d: %v", ErrRootRejected, prevVersion, err)
		}
	}
	if err := root.VerifyDelegate(metadata.ROOT, root); err != nil {
		return 0, fmt.Errorf("%w: not signed by the threshold of its own root keys: %v", ErrRootRejected, err)
	}
	for _, role := range OnlineRoles {
		r := root.Signed.Roles[role]
		if len(r.KeyIDs) != 1 || r.Threshold != 1 {
			return 0, fmt.Errorf("%w: role %s must list exactly one key (the hub's) with threshold 1", ErrRootRejected, role)
		}
		if _, err := s.signerFor(root, role); err != nil {
			return 0, err
		}
	}
	if err := atomicfile.Write(s.metaPath(fmt.Sprintf("%d.root.json", root.Signed.Version)), data, 0o644); err != nil {
		return 0, err
	}
	if err := atomicfile.Write(s.metaPath("root.json"), data, 0o644); err != nil {
		return 0, err
	}
	if err := s.promoteKeys(root); err != nil {
		return 0, err
	}
	st, err := s.loadState()
	if err != nil {
		return 0, err
	}
	if st.targets == nil {
		st.targets = metadata.Targets(now)
		st.targets.Signed.Version = 0
	}
	if err := s.signOnline(st, now, true, true); err != nil {
		return 0, err
	}
	s.logger.Info("accepted new root", "version", root.Signed.Version, "expires", root.Signed.Expires)
	return root.Signed.Version, nil
}

// checkRoot checks the shape of an uploaded root.
func checkRoot(root *metadata.Metadata[metadata.RootType], now time.Time) error {
	var errs []string
	if root.Signed.Type != metadata.ROOT {
		errs = append(errs, fmt.Sprintf("_type is %q, want root", root.Signed.Type))
	}
	if !root.Signed.ConsistentSnapshot {
		errs = append(errs, "consistent_snapshot must be true")
	}
	if !root.Signed.Expires.After(now) {
		errs = append(errs, "it expired at "+root.Signed.Expires.UTC().Format(time.RFC3339))
	}
	for _, role := range metadata.TOP_LEVEL_ROLE_NAMES {
		r := root.Signed.Roles[role]
		if r == nil {
			errs = append(errs, "role "+role+" is missing")
			continue
		}
		if r.Threshold < 1 || r.Threshold > len(r.KeyIDs) {
			errs = append(errs, fmt.Sprintf("role %s has threshold %d with %d keys", role, r.Threshold, len(r.KeyIDs)))
		}
		for _, id := range r.KeyIDs {
			k := root.Signed.Keys[id]
			if k == nil {
				errs = append(errs, fmt.Sprintf("role %s lists key %s that is not in keys", role, id))
				continue
			}
			if got, err := k.ID(); err != nil || got != id {
				errs = append(errs, fmt.Sprintf("key %s: its id does not match its content", id))
			}
			if k.Type != metadata.KeyTypeEd25519 {
				errs = append(errs, fmt.Sprintf("key %s is %s, want ed25519", id, k.Type))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrRootRejected, strings.Join(errs, "; "))
	}
	return nil
}

// signOnline signs and writes new versions of targets (if bumpTargets),
// snapshot (if bumpSnapshot or targets changed) and timestamp, in that
// order, so a reader following timestamp.json always finds complete files.
// s.mu must be held.
func (s *Service) signOnline(st *state, now time.Time, bumpTargets, bumpSnapshot bool) error {
	keys := map[string]*onlineKey{}
	for _, role := range OnlineRoles {
		k, err := s.signerFor(st.root, role)
		if err != nil {
			return err
		}
		keys[role] = k
	}
	now = now.UTC().Truncate(time.Second)
	if bumpTargets {
		st.targets.Signed.Version++
		st.targets.Signed.Expires = now.Add(TargetsLifetime)
		if err := signWrite(st.targets, keys[metadata.TARGETS], s.metaPath(fmt.Sprintf("%d.targets.json", st.targets.Signed.Version))); err != nil {
			return fmt.Errorf("signing targets: %w", err)
		}
		bumpSnapshot = true
	}
	if bumpSnapshot || st.snapshot == nil {
		if st.snapshot == nil {
			st.snapshot = metadata.Snapshot(now)
			st.snapshot.Signed.Version = 0
		}
		st.snapshot.Signed.Version++
		st.snapshot.Signed.Expires = now.Add(SnapshotLifetime)
		st.snapshot.Signed.Meta = map[string]*metadata.MetaFiles{"targets.json": metadata.MetaFile(st.targets.Signed.Version)}
		if err := signWrite(st.snapshot, keys[metadata.SNAPSHOT], s.metaPath(fmt.Sprintf("%d.snapshot.json", st.snapshot.Signed.Version))); err != nil {
			return fmt.Errorf("signing snapshot: %w", err)
		}
	}
	snapData, err := os.ReadFile(s.metaPath(fmt.Sprintf("%d.snapshot.json", st.snapshot.Signed.Version)))
	if err != nil {
		return fmt.Errorf("reading snapshot: %w", err)
	}
	if st.timestamp == nil {
		st.timestamp = metadata.Timestamp(now)
		st.timestamp.Signed.Version = 0
	}
	st.timestamp.Signed.Version++
	st.timestamp.Signed.Expires = now.Add(TimestampLifetime)
	h256, h512 := sha256.Sum256(snapData), sha512.Sum512(snapData)
	st.timestamp.Signed.Meta = map[string]*metadata.MetaFiles{"snapshot.json": {
		Version: st.snapshot.Signed.Version,
		Length:  int64(len(snapData)),
		Hashes:  metadata.Hashes{"sha256": h256[:], "sha512": h512[:]},
	}}
	if err := signWrite(st.timestamp, keys[metadata.TIMESTAMP], s.metaPath("timestamp.json")); err != nil {
		return fmt.Errorf("signing timestamp: %w", err)
	}
	return nil
}

// signWrite replaces m's signatures with one by k and writes it atomically.
func signWrite[T metadata.Roles](m *metadata.Metadata[T], k *onlineKey, p string) error {
	signer, err := Signer(k.priv)
	if err != nil {
		return err
	}
	m.ClearSignatures()
	if _, err := m.Sign(signer); err != nil {
		return err
	}
	data, err := m.ToBytes(true)
	if err != nil {
		return err
	}
	return atomicfile.Write(p, data, 0o644)
}

// RefreshTimestamp re-signs timestamp when less than half its lifetime is
// left at now, and snapshot too when it expires within a day (targets when
// it expires within a week). Before keys init it does nothing.
func (s *Service) RefreshTimestamp(now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.loadState()
	if errors.Is(err, ErrNotInitialised) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.timestamp == nil {
		return nil
	}
	if left := st.root.Signed.Expires.Sub(now); left < 30*24*time.Hour {
		s.logger.Warn(`root metadata expires soon; devices stop accepting updates then: sign a new root with "outpost keys rotate"`,
			"version", st.root.Signed.Version, "expires", st.root.Signed.Expires)
	}
	bumpTargets := st.targets.Signed.Expires.Sub(now) < 7*24*time.Hour
	bumpSnapshot := st.snapshot.Signed.Expires.Sub(now) < 24*time.Hour
	if !bumpTargets && !bumpSnapshot && st.timestamp.Signed.Expires.Sub(now) >= TimestampLifetime/2 {
		return nil
	}
	if err := s.signOnline(st, now, bumpTargets, bumpSnapshot); err != nil {
		return fmt.Errorf("refreshing timestamp: %w", err)
	}
	s.logger.Debug("re-signed timestamp", "version", st.timestamp.Signed.Version, "expires", st.timestamp.Signed.Expires)
	return nil
}

// Run re-signs expiring metadata every RefreshInterval until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	periodic.Run(ctx, RefreshInterval, s.logger, "re-signing TUF metadata", func(context.Context) error {
		return s.RefreshTimestamp(s.now())
	})
	return nil
}

// RoleStatus describes one role of the current metadata.
type RoleStatus struct {
	KeyIDs    []string  `json:"keyids"`
	Threshold int       `json:"threshold"`
	Version   int64     `json:"version"`
	Expires   time.Time `json:"expires"`
	// PendingKeyID is a key made for a rotation not yet in a root.
	PendingKeyID string `json:"pending_keyid,omitempty"`
}

// Status is the repository's state for `outpost keys show`.
type Status struct {
	Initialised bool                  `json:"initialised"`
	Roles       map[string]RoleStatus `json:"roles,omitempty"`
	Artifacts   int                   `json:"artifacts"`
}

// Status reports roles, key ids, versions and expiries.
func (s *Service) Status() (Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.loadState()
	if errors.Is(err, ErrNotInitialised) {
		return Status{}, nil
	}
	if err != nil {
		return Status{}, err
	}
	out := Status{Initialised: true, Roles: map[string]RoleStatus{}}
	for _, role := range metadata.TOP_LEVEL_ROLE_NAMES {
		r := st.root.Signed.Roles[role]
		rs := RoleStatus{KeyIDs: r.KeyIDs, Threshold: r.Threshold}
		switch role {
		case metadata.ROOT:
			rs.Version, rs.Expires = st.root.Signed.Version, st.root.Signed.Expires
		case metadata.TARGETS:
			if st.targets != nil {
				rs.Version, rs.Expires = st.targets.Signed.Version, st.targets.Signed.Expires
			}
		case metadata.SNAPSHOT:
			if st.snapshot != nil {
				rs.Version, rs.Expires = st.snapshot.Signed.Version, st.snapshot.Signed.Expires
			}
		case metadata.TIMESTAMP:
			if st.timestamp != nil {
				rs.Version, rs.Expires = st.timestamp.Signed.Version, st.timestamp.Signed.Expires
			}
		}
		if IsOnlineRole(role) {
			pk, err := s.loadKey(role, true)
			if err != nil {
				return Status{}, err
			}
			if pk != nil {
				rs.PendingKeyID = pk.id
			}
		}
		out.Roles[role] = rs
	}
	if st.targets != nil {
		out.Artifacts = len(st.targets.Signed.Targets)
	}
	return out, nil
}
