package ota

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/atomicfile"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Artifact types.
const (
	TypeAgent   = "agent"
	TypeFile    = "file"
	TypeService = "service"
)

var (
	nameRE     = regexp.MustCompile(`^[a-z0-9._-]{1,64}$`)
	versionRE  = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`)
	platformRE = regexp.MustCompile(`^[a-z0-9]+-[a-z0-9_]+$`)
)

// Spec names an artifact: the target path is {Name}/{Version}/{Platform}.
type Spec struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	Type     string `json:"type"`
	Platform string `json:"platform"`
}

// NormalizePlatform turns "linux/arm64" into "linux-arm64".
func NormalizePlatform(p string) string { return strings.ReplaceAll(p, "/", "-") }

// Validate reports every problem of sp at once, wrapped in ErrInvalid.
func (sp Spec) Validate() error {
	var errs []string
	if !nameRE.MatchString(sp.Name) || strings.HasPrefix(sp.Name, ".") {
		errs = append(errs, fmt.Sprintf("name %q: 1–64 characters of a-z 0-9 . _ - not starting with .", sp.Name))
	}
	if len(sp.Version) > 64 || !versionRE.MatchString(sp.Version) {
		errs = append(errs, fmt.Sprintf("version %q: semantic version MAJOR.MINOR.PATCH[-pre]", sp.Version))
	}
	switch sp.Type {
	case TypeAgent, TypeFile, TypeService:
	default:
		errs = append(errs, fmt.Sprintf("type %q: agent, file or service", sp.Type))
	}
	if sp.Platform != "any" && (len(sp.Platform) > 32 || !platformRE.MatchString(sp.Platform)) {
		errs = append(errs, fmt.Sprintf("platform %q: OS/ARCH such as linux/arm64 (or linux-arm64), or any", sp.Platform))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(errs, "; "))
	}
	return nil
}

// TargetPath is the TUF target path of the artifact.
func (sp Spec) TargetPath() string { return sp.Name + "/" + sp.Version + "/" + sp.Platform }

// Custom is the custom metadata of every Outpost target.
type Custom struct {
	Outpost Spec `json:"outpost"`
}

// Artifact is a published target.
type Artifact struct {
	Spec
	Path        string    `json:"path"`
	Length      int64     `json:"length"`
	SHA256      string    `json:"sha256"`
	SHA512      string    `json:"sha512"`
	PublishedAt time.Time `json:"published_at"`
	// DeltaFrom and DeltaFor are set on a delta target: the version it
	// patches and the path of the full target it rebuilds.
	DeltaFrom string `json:"delta_from,omitempty"`
	DeltaFor  string `json:"delta_for,omitempty"`
	// FullLength is the length of the DeltaFor target and DeltaPercent
	// this delta's length as a percentage of it (delta targets only).
	FullLength   int64   `json:"full_length,omitempty"`
	DeltaPercent float64 `json:"delta_percent,omitempty"`
}

// blobPath is where a consistent-snapshot client fetches a target:
// {dir}/{hash}.{base}.
func blobPath(target, hexHash string) string {
	dir, base := path.Split(target)
	return dir + hexHash + "." + base
}

// Publish stores the artifact read from body (at most MaxArtifactBytes),
// adds it as a target and signs new targets, snapshot and timestamp. If the
// target exists with the same bytes it returns it with created false; with
// other bytes, ErrConflict.
func (s *Service) Publish(sp Spec, body io.Reader) (Artifact, bool, error) {
	sp.Platform = NormalizePlatform(sp.Platform)
	if err := sp.Validate(); err != nil {
		return Artifact{}, false, err
	}
	if _, ok := s.RootJSON(); !ok {
		return Artifact{}, false, ErrNotInitialised
	}
	// Receive the upload outside the lock: it may be slow and large.
	up, err := s.receive(body)
	if err != nil {
		return Artifact{}, false, err
	}
	defer up.discard()
	custom, err := json.Marshal(Custom{Outpost: sp})
	if err != nil {
		return Artifact{}, false, err
	}
	return s.addTarget(sp.TargetPath(), custom, up)
}

// upload is a received file not yet stored as a target.
type upload struct {
	tmp            string
	n              int64
	sum256, sum512 []byte
}

// discard removes the file unless addTarget moved it into place.
func (u *upload) discard() { os.Remove(u.tmp) }

// receive copies body (at most MaxArtifactBytes, not empty) to a synced
// temporary file under targets/ and hashes it.
func (s *Service) receive(body io.Reader) (*upload, error) {
	tmp, err := os.CreateTemp(filepath.Join(s.dir, "targets"), ".upload-*")
	if err != nil {
		return nil, fmt.Errorf("creating upload file: %w", err)
	}
	ok := false
	defer func() {
		tmp.Close()
		if !ok {
			os.Remove(tmp.Name())
		}
	}()
	h256, h512 := sha256.New(), sha512.New()
	n, err := io.Copy(io.MultiWriter(tmp, h256, h512), io.LimitReader(body, s.maxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("receiving artifact: %w", err)
	}
	if n > s.maxBytes {
		return nil, fmt.Errorf("%w: over %d bytes", ErrTooLarge, s.maxBytes)
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: the artifact is empty", ErrInvalid)
	}
	if err := tmp.Sync(); err != nil {
		return nil, fmt.Errorf("syncing artifact: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("closing artifact: %w", err)
	}
	ok = true
	return &upload{tmp: tmp.Name(), n: n, sum256: h256.Sum(nil), sum512: h512.Sum(nil)}, nil
}

// addTarget stores up as the blob of target tpath with the given custom
// metadata and signs new targets, snapshot and timestamp. If tpath exists
// with the same bytes it returns it with created false; with other bytes,
// ErrConflict.
func (s *Service) addTarget(tpath string, custom json.RawMessage, up *upload) (Artifact, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now().UTC()
	st, err := s.loadState()
	if err != nil {
		return Artifact{}, false, err
	}
	n, sum256, sum512 := up.n, up.sum256, up.sum512
	if old, ok := st.targets.Signed.Targets[tpath]; ok {
		a, err := s.artifactOf(tpath, old, nil)
		if err != nil {
			return Artifact{}, false, err
		}
		if old.Length == n && bytes.Equal(old.Hashes["sha256"], sum256) && bytes.Equal(old.Hashes["sha512"], sum512) {
			return a, false, nil
		}
		return Artifact{}, false, fmt.Errorf("%w: %s was published with sha256 %s; publish a new version instead", ErrConflict, tpath, a.SHA256)
	}
	dir := filepath.Join(s.dir, "targets", filepath.FromSlash(path.Dir(tpath)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Artifact{}, false, fmt.Errorf("creating %s: %w", dir, err)
	}
	hex256, hex512 := hex.EncodeToString(sum256), hex.EncodeToString(sum512)
	final := filepath.Join(s.dir, "targets", filepath.FromSlash(blobPath(tpath, hex256)))
	if err := os.Chmod(up.tmp, 0o644); err != nil {
		return Artifact{}, false, err
	}
	if err := os.Rename(up.tmp, final); err != nil {
		return Artifact{}, false, fmt.Errorf("storing artifact: %w", err)
	}
	// go-tuf's client names a consistent-snapshot target by whichever
	// hash it sees first, so the blob is reachable by its sha512 too.
	alias := filepath.Join(s.dir, "targets", filepath.FromSlash(blobPath(tpath, hex512)))
	if err := os.Link(final, alias); err != nil && !errors.Is(err, fs.ErrExist) {
		return Artifact{}, false, fmt.Errorf("linking artifact: %w", err)
	}
	raw := custom
	tf := &metadata.TargetFiles{Length: n, Hashes: metadata.Hashes{"sha256": sum256, "sha512": sum512}, Custom: &raw, Path: tpath}
	st.targets.Signed.Targets[tpath] = tf
	if err := s.setPublished(tpath, now); err != nil {
		return Artifact{}, false, err
	}
	if err := s.signOnline(st, now, true, true); err != nil {
		return Artifact{}, false, err
	}
	s.logger.Info("published artifact", "target", tpath, "length", n, "sha256", hex256, "targets_version", st.targets.Signed.Version)
	a, err := s.artifactOf(tpath, tf, nil)
	return a, true, err
}

// Artifacts lists the current targets, all or those named name, sorted by
// name, version and platform.
func (s *Service) Artifacts(name string) ([]Artifact, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.loadState()
	if errors.Is(err, ErrNotInitialised) {
		return []Artifact{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := []Artifact{}
	if st.targets == nil {
		return out, nil
	}
	pub, err := s.published()
	if err != nil {
		return nil, err
	}
	for p, tf := range st.targets.Signed.Targets {
		a, err := s.artifactOf(p, tf, pub)
		if err != nil {
			return nil, err
		}
		fillDeltaSize(&a, st.targets.Signed.Targets)
		if name == "" || a.Name == name {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		if a.Version != b.Version {
			return a.Version < b.Version
		}
		if a.Platform != b.Platform {
			return a.Platform < b.Platform
		}
		return a.Path < b.Path
	})
	return out, nil
}

// artifactOf describes a target; pub is the publication index, nil: read
// it. s.mu must be held.
func (s *Service) artifactOf(p string, tf *metadata.TargetFiles, pub map[string]time.Time) (Artifact, error) {
	a := Artifact{Path: p, Length: tf.Length, SHA256: hex.EncodeToString(tf.Hashes["sha256"]), SHA512: hex.EncodeToString(tf.Hashes["sha512"])}
	if tf.Custom != nil {
		var c deltaCustom
		if err := json.Unmarshal(*tf.Custom, &c); err != nil {
			return Artifact{}, fmt.Errorf("target %s: decoding custom metadata: %w", p, err)
		}
		a.Spec, a.DeltaFrom, a.DeltaFor = c.Outpost.Spec, c.Outpost.DeltaFrom, c.Outpost.DeltaFor
	}
	if pub == nil {
		var err error
		if pub, err = s.published(); err != nil {
			return Artifact{}, err
		}
	}
	a.PublishedAt = pub[p]
	return a, nil
}

func (s *Service) publishedPath() string { return filepath.Join(s.dir, "published.json") }

// published reads the index of publication times. s.mu must be held.
func (s *Service) published() (map[string]time.Time, error) {
	m := map[string]time.Time{}
	data, err := os.ReadFile(s.publishedPath())
	if errors.Is(err, fs.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading publication times: %w", err)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", s.publishedPath(), err)
	}
	return m, nil
}

// setPublished records when p was published. s.mu must be held.
func (s *Service) setPublished(p string, t time.Time) error {
	m, err := s.published()
	if err != nil {
		return err
	}
	m[p] = t
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(s.publishedPath(), data, 0o644)
}
