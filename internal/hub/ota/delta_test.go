package ota

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/otadelta"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// releases returns two versions of a binary-like artifact differing by a
// few small edits.
func releases(n int) (v1, v2 []byte) {
	r := rand.New(rand.NewPCG(7, 7))
	v1 = make([]byte, n)
	for i := range v1 {
		v1[i] = byte(r.IntN(256))
	}
	v2 = append([]byte(nil), v1...)
	for i := 4096; i < n; i += n / 5 {
		copy(v2[i:], "1.0.1")
	}
	return v1, v2
}

func TestPublishDelta(t *testing.T) {
	s := initService(t, 0)
	v1, v2 := releases(1 << 20)
	sp1 := Spec{Name: "outpost-agent", Version: "1.0.0", Type: TypeAgent, Platform: "linux/arm64"}
	if _, _, err := s.Publish(sp1, bytes.NewReader(v1)); err != nil {
		t.Fatal(err)
	}
	sp2 := sp1
	sp2.Version = "1.0.1"
	full, delta, created, err := s.PublishDelta(sp2, "1.0.0", bytes.NewReader(v2))
	if err != nil {
		t.Fatal(err)
	}
	if !created || full.Path != "outpost-agent/1.0.1/linux-arm64" || full.Length != int64(len(v2)) {
		t.Errorf("full: created %v %+v", created, full)
	}
	if delta.Path != "outpost-agent/1.0.1/linux-arm64.from-1.0.0" || delta.DeltaFrom != "1.0.0" || delta.DeltaFor != full.Path ||
		delta.Spec != full.Spec || delta.FullLength != full.Length {
		t.Errorf("delta: %+v", delta)
	}
	if delta.Length*10 > full.Length || delta.DeltaPercent <= 0 || delta.DeltaPercent > 10 {
		t.Errorf("delta %d bytes (%.1f %%) for %d bytes of full artifact", delta.Length, delta.DeltaPercent, full.Length)
	}

	// Both are in targets metadata signed by the targets key.
	s.mu.Lock()
	st, err := s.loadState()
	s.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.root.VerifyDelegate(metadata.TARGETS, st.targets); err != nil {
		t.Fatalf("targets signature: %v", err)
	}
	dtf := st.targets.Signed.Targets[delta.Path]
	if dtf == nil || st.targets.Signed.Targets[full.Path] == nil {
		t.Fatalf("signed targets: %v", st.targets.Signed.Targets)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, *dtf.Custom); err != nil {
		t.Fatal(err)
	}
	if compact.String() != `{"outpost":{"name":"outpost-agent","version":"1.0.1","type":"agent","platform":"linux-arm64","delta_from":"1.0.0","delta_for":"outpost-agent/1.0.1/linux-arm64"}}` {
		t.Errorf("delta custom metadata: %s", compact.String())
	}
	// The blob is served where a consistent-snapshot client looks and
	// decodes to the full artifact with 1.0.0 as dictionary.
	f, err := s.OpenTarget(blobPath(delta.Path, delta.SHA256))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out bytes.Buffer
	if _, err := otadelta.Decode(f, v1, &out, full.Length); err != nil || !bytes.Equal(out.Bytes(), v2) {
		t.Fatalf("decoding the stored delta: %v (equal %v)", err, bytes.Equal(out.Bytes(), v2))
	}

	// Listing shows the saving; publishing again changes nothing.
	arts, err := s.Artifacts("outpost-agent")
	if err != nil || len(arts) != 3 || arts[2].Path != delta.Path || arts[2].DeltaPercent != delta.DeltaPercent || arts[1].DeltaFrom != "" {
		t.Fatalf("Artifacts: %+v, %v", arts, err)
	}
	_, again, created, err := s.PublishDelta(sp2, "1.0.0", bytes.NewReader(v2))
	if err != nil || created || again.SHA256 != delta.SHA256 || again.DeltaPercent != delta.DeltaPercent {
		t.Errorf("publishing again: created %v, %+v, %v", created, again, err)
	}
}

func TestPublishDeltaRefused(t *testing.T) {
	s := initService(t, 0)
	v1, v2 := releases(64 << 10)
	sp1 := Spec{Name: "app", Version: "1.0.0", Type: TypeService, Platform: "linux-amd64"}
	if _, _, err := s.Publish(sp1, bytes.NewReader(v1)); err != nil {
		t.Fatal(err)
	}
	sp2 := sp1
	sp2.Version = "1.0.1"
	other := sp2
	other.Platform = "linux-arm64"
	for _, tc := range []struct {
		name string
		sp   Spec
		from string
		want error
	}{
		{"unknown version", sp2, "0.9.0", ErrDeltaBase},
		{"other platform", other, "1.0.0", ErrDeltaBase},
		{"bad version", sp2, "latest", ErrInvalid},
		{"from itself", sp2, "1.0.1", ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, _, err := s.PublishDelta(tc.sp, tc.from, bytes.NewReader(v2)); !errors.Is(err, tc.want) {
				t.Fatalf("PublishDelta: %v, want %v", err, tc.want)
			}
		})
	}
	// A refused delta publishes nothing, not even the full artifact.
	if arts, err := s.Artifacts("app"); err != nil || len(arts) != 1 {
		t.Errorf("after refusals: %+v, %v", arts, err)
	}
	left, err := filepath.Glob(filepath.Join(s.dir, "targets", ".upload-*"))
	if err != nil || len(left) != 0 {
		t.Errorf("temporary files left: %v %v", left, err)
	}
}

// TestPublishDeltaSkipsTinyArtifacts: a delta that would not save anything
// is skipped with the reason; the full artifact is published.
func TestPublishDeltaSkipsTinyArtifacts(t *testing.T) {
	s := initService(t, 0)
	if _, _, err := s.Publish(Spec{Name: "cfg", Version: "1.0.0", Type: "file", Platform: "any"}, strings.NewReader("tiny v1")); err != nil {
		t.Fatal(err)
	}
	full, delta, created, err := s.PublishDelta(Spec{Name: "cfg", Version: "1.0.1", Type: "file", Platform: "any"}, "1.0.0", strings.NewReader("tiny v2 bytes"))
	var skipped *DeltaSkippedError
	if !errors.As(err, &skipped) || !created || full.Path != "cfg/1.0.1/any" || delta.Path != "" {
		t.Fatalf("PublishDelta = %+v, %+v, %v, %v; want the full artifact and a skipped delta", full, delta, created, err)
	}
	arts, err := s.Artifacts("cfg")
	if err != nil || len(arts) != 2 {
		t.Errorf("artifacts %+v, %v; want 1.0.0 and 1.0.1, no delta", arts, err)
	}
}
