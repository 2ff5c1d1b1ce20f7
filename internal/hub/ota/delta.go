package ota

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/outpost-edge/outpost/internal/otadelta"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// ErrDeltaBase: a delta was asked for from a version that is not published
// under the same name and platform. It is defined here rather than in
// errors.go to keep the delta feature in one file.
var ErrDeltaBase = errors.New("delta base version is not published")

// deltaSuffix joins a full target path and the version a delta patches.
const deltaSuffix = ".from-"

// DeltaPath is the target path of the delta that turns version from of
// sp's artifact into sp: {name}/{version}/{platform}.from-{from}.
func DeltaPath(sp Spec, from string) string { return sp.TargetPath() + deltaSuffix + from }

// deltaCustom is the custom metadata of every target: a delta target adds
// delta_from and delta_for to the Outpost spec.
type deltaCustom struct {
	Outpost struct {
		Spec
		DeltaFrom string `json:"delta_from,omitempty"`
		DeltaFor  string `json:"delta_for,omitempty"`
	} `json:"outpost"`
}

// PublishDelta publishes body as sp, exactly as Publish does (a delta
// never replaces the full artifact), then publishes a signed delta target
// DeltaPath(sp, from): a zstd patch (package otadelta) built with version
// from of the same name and platform as dictionary. That version must be
// published already (ErrDeltaBase). If the delta target exists it is
// returned as is. created tells whether the full target is new.
// DeltaSkippedError says that PublishDelta published the full artifact
// but no delta, and why.
type DeltaSkippedError struct{ Reason string }

func (e *DeltaSkippedError) Error() string { return "no delta: " + e.Reason }

func (s *Service) PublishDelta(sp Spec, from string, body io.Reader) (full, delta Artifact, created bool, err error) {
	sp.Platform = NormalizePlatform(sp.Platform)
	if err := sp.Validate(); err != nil {
		return Artifact{}, Artifact{}, false, err
	}
	if len(from) > 64 || !versionRE.MatchString(from) {
		return Artifact{}, Artifact{}, false, fmt.Errorf("%w: delta_from %q: semantic version MAJOR.MINOR.PATCH[-pre]", ErrInvalid, from)
	}
	if from == sp.Version {
		return Artifact{}, Artifact{}, false, fmt.Errorf("%w: delta_from %s is the version being published", ErrInvalid, from)
	}
	if _, ok := s.RootJSON(); !ok {
		return Artifact{}, Artifact{}, false, ErrNotInitialised
	}
	base := Spec{Name: sp.Name, Version: from, Type: sp.Type, Platform: sp.Platform}
	if _, err := s.target(base.TargetPath()); errors.Is(err, ErrNotFound) {
		return Artifact{}, Artifact{}, false, fmt.Errorf("%w: %s is not published; publish version %s for %s first", ErrDeltaBase, base.TargetPath(), from, sp.Platform)
	} else if err != nil {
		return Artifact{}, Artifact{}, false, err
	}

	full, created, err = s.Publish(sp, body)
	if err != nil {
		return Artifact{}, Artifact{}, false, err
	}
	dpath := DeltaPath(sp, from)
	if tf, err := s.target(dpath); err == nil {
		delta, err = s.describe(dpath, tf)
		return full, delta, created, err
	} else if !errors.Is(err, ErrNotFound) {
		return Artifact{}, Artifact{}, false, err
	}

	// Build the delta outside the lock: blobs never change once stored.
	baseTF, err := s.target(base.TargetPath())
	if err != nil {
		return Artifact{}, Artifact{}, false, err
	}
	oldData, err := s.readBlob(base.TargetPath(), baseTF)
	if err != nil {
		return Artifact{}, Artifact{}, false, err
	}
	fullTF, err := s.target(full.Path)
	if err != nil {
		return Artifact{}, Artifact{}, false, err
	}
	newData, err := s.readBlob(full.Path, fullTF)
	if err != nil {
		return Artifact{}, Artifact{}, false, err
	}
	if len(oldData) > otadelta.MaxInput || len(newData) > otadelta.MaxInput {
		return Artifact{}, Artifact{}, false, fmt.Errorf("%w: deltas are built for artifacts up to %d bytes", ErrTooLarge, otadelta.MaxInput)
	}
	// The full artifact is published now: a delta that cannot be built,
	// or would not save anything, is skipped with the reason, not an error.
	patch, err := otadelta.Encode(oldData, newData)
	if err != nil {
		return full, Artifact{}, created, &DeltaSkippedError{Reason: err.Error()}
	}
	// Check the patch once here rather than have every device fall back.
	var check bytes.Buffer
	if _, err := otadelta.Decode(bytes.NewReader(patch), oldData, &check, int64(len(newData))); err != nil || !bytes.Equal(check.Bytes(), newData) {
		return full, Artifact{}, created, &DeltaSkippedError{Reason: fmt.Sprintf("the delta does not decode to the artifact (%v)", err)}
	}
	if len(patch) >= len(newData) {
		return full, Artifact{}, created, &DeltaSkippedError{Reason: fmt.Sprintf("the delta (%d bytes) is not smaller than the artifact (%d bytes)", len(patch), len(newData))}
	}

	var c deltaCustom
	c.Outpost.Spec, c.Outpost.DeltaFrom, c.Outpost.DeltaFor = full.Spec, from, full.Path
	custom, err := json.Marshal(c)
	if err != nil {
		return Artifact{}, Artifact{}, false, err
	}
	up, err := s.receive(bytes.NewReader(patch))
	if err != nil {
		return Artifact{}, Artifact{}, false, fmt.Errorf("storing delta %s: %w", dpath, err)
	}
	defer up.discard()
	delta, _, err = s.addTarget(dpath, custom, up)
	if err != nil {
		return Artifact{}, Artifact{}, false, err
	}
	delta.FullLength = full.Length
	if full.Length > 0 {
		delta.DeltaPercent = 100 * float64(delta.Length) / float64(full.Length)
	}
	s.logger.Info("published delta", "target", dpath, "length", delta.Length, "full_length", full.Length,
		"percent", fmt.Sprintf("%.1f", delta.DeltaPercent))
	return full, delta, created, nil
}

// target returns the current signed target p, or ErrNotFound.
func (s *Service) target(p string) (*metadata.TargetFiles, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.loadState()
	if err != nil {
		return nil, err
	}
	if st.targets == nil {
		return nil, fmt.Errorf("%w: target %s", ErrNotFound, p)
	}
	tf, ok := st.targets.Signed.Targets[p]
	if !ok {
		return nil, fmt.Errorf("%w: target %s", ErrNotFound, p)
	}
	return tf, nil
}

// describe is artifactOf with the delta sizes filled in.
func (s *Service) describe(p string, tf *metadata.TargetFiles) (Artifact, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.artifactOf(p, tf, nil)
	if err != nil {
		return Artifact{}, err
	}
	st, err := s.loadState()
	if err != nil {
		return Artifact{}, err
	}
	fillDeltaSize(&a, st.targets.Signed.Targets)
	return a, nil
}

// readBlob reads the stored blob of target p and checks its length and
// hashes.
func (s *Service) readBlob(p string, tf *metadata.TargetFiles) ([]byte, error) {
	f, err := s.OpenTarget(blobPath(p, hex.EncodeToString(tf.Hashes["sha256"])))
	if err != nil {
		return nil, fmt.Errorf("reading blob of %s: %w", p, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, tf.Length+1))
	if err != nil {
		return nil, fmt.Errorf("reading blob of %s: %w", p, err)
	}
	if err := tf.VerifyLengthHashes(data); err != nil {
		return nil, fmt.Errorf("blob of %s under %s is damaged: %w", p, filepath.Join(s.dir, "targets"), err)
	}
	return data, nil
}

// fillDeltaSize sets a delta artifact's FullLength and DeltaPercent from
// the full target it rebuilds.
func fillDeltaSize(a *Artifact, targets map[string]*metadata.TargetFiles) {
	if a.DeltaFor == "" || !strings.HasPrefix(a.Path, a.DeltaFor+deltaSuffix) {
		return
	}
	if full, ok := targets[a.DeltaFor]; ok && full.Length > 0 {
		a.FullLength = full.Length
		a.DeltaPercent = 100 * float64(a.Length) / float64(full.Length)
	}
}
