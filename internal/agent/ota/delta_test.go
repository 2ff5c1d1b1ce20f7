package ota

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/outpost-edge/outpost/internal/otadelta"
)

// addDelta signs patch as the delta target of name/version/platform from
// version from (at the next publish) and serves it; serve, if not nil,
// replaces the bytes served.
func (r *testRepo) addDelta(name, version, from, platform string, patch, serve []byte) {
	r.t.Helper()
	full := name + "/" + version + "/" + platform
	p := full + ".from-" + from
	tf, err := metadata.TargetFile().FromBytes(p, patch, "sha256")
	if err != nil {
		r.t.Fatal(err)
	}
	custom := json.RawMessage(fmt.Sprintf(`{"outpost":{"name":%q,"version":%q,"type":"agent","platform":%q,"delta_from":%q,"delta_for":%q}}`,
		name, version, platform, from, full))
	tf.Custom = &custom
	r.targets.Signed.Targets[p] = tf
	if serve == nil {
		serve = patch
	}
	r.setFile("targets/"+name+"/"+version+"/"+hex.EncodeToString(tf.Hashes["sha256"])+"."+platform+".from-"+from, serve)
}

// agentBuilds returns two builds of a binary-like artifact differing by
// a few edits, as a patch release does.
func agentBuilds(t *testing.T) (v1, v2 []byte) {
	t.Helper()
	v1 = randomBytes(t, 512<<10)
	v2 = append([]byte(nil), v1...)
	for i := 5000; i < len(v2); i += 100 << 10 {
		copy(v2[i:], "outpost-agent 1.0.1")
	}
	return v1, v2
}

func mustEncode(t *testing.T, old, new []byte) []byte {
	t.Helper()
	d, err := otadelta.Encode(old, new)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDownloadDelta(t *testing.T) {
	v1, v2 := agentBuilds(t)
	good := mustEncode(t, v1, v2)
	corrupt := append([]byte(nil), good...)
	corrupt[len(corrupt)-10] ^= 0xff
	// v3 has v2's length: its delta decodes to the signed size, but not
	// to the signed bytes.
	v3 := append([]byte(nil), v2...)
	copy(v3[200<<10:], "not the release")
	// A frame announcing a terabyte of output.
	bomb := []byte{0x28, 0xb5, 0x2f, 0xfd, 3<<6 | 3, 10 << 3}
	bomb = binary.LittleEndian.AppendUint32(bomb, otadelta.DictID(v1))
	bomb = binary.LittleEndian.AppendUint64(bomb, 1<<40)
	bomb = append(bomb, 1, 0, 0)
	otherInstalled := append([]byte(nil), v1...)
	otherInstalled[1234] ^= 1

	for _, tc := range []struct {
		name      string
		patch     []byte // signed delta; nil: none published
		serve     []byte // bytes served instead of patch
		installed []byte
		reason    string // "": the delta is used
	}{
		{name: "delta applied", patch: good, installed: v1},
		{name: "no delta", installed: v1, reason: FallbackNoDelta},
		{name: "signed but corrupt delta", patch: corrupt, installed: v1, reason: FallbackBadDelta},
		{name: "delta tampered in transit", patch: good, serve: corrupt, installed: v1, reason: FallbackDeltaDownload},
		{name: "installed file differs", patch: good, installed: otherInstalled, reason: FallbackBase},
		{name: "output does not verify", patch: mustEncode(t, v1, v3), installed: v1, reason: FallbackOutput},
		{name: "memory bomb", patch: bomb, installed: v1, reason: FallbackBadDelta},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := newTestRepo(t)
			repo.addTarget("outpost-agent", "1.0.0", TypeAgent, "linux-arm64", v1)
			repo.addTarget("outpost-agent", "1.0.1", TypeAgent, "linux-arm64", v2)
			if tc.patch != nil {
				repo.addDelta("outpost-agent", "1.0.1", "1.0.0", "linux-arm64", tc.patch, tc.serve)
			}
			repo.publish()
			c := newTestClient(t, repo, "", nil)
			ctx := context.Background()
			installedPath := filepath.Join(t.TempDir(), "outpost-agent")
			if err := os.WriteFile(installedPath, tc.installed, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := c.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			full, err := c.Lookup("outpost-agent", "1.0.1", "linux-arm64", Installed("1.0.0"))
			if err != nil {
				t.Fatal(err)
			}
			path, st, err := c.DownloadDelta(ctx, full, installedPath, "1.0.0", nil)
			if err != nil {
				t.Fatalf("DownloadDelta: %v (stats %+v)", err, st)
			}
			if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, v2) {
				t.Fatalf("result at %s is not 1.0.1 (%v)", path, err)
			}
			if tc.reason == "" {
				if !st.Delta || st.FellBack || st.DeltaBytes != int64(len(good)) || st.BytesFetched != int64(len(good)) {
					t.Errorf("stats %+v, want the delta of %d bytes used", st, len(good))
				}
				if st.BytesFetched*10 > int64(len(v2)) {
					t.Errorf("fetched %d bytes for a %d-byte artifact", st.BytesFetched, len(v2))
				}
			} else {
				if st.Delta || !st.FellBack || st.FallbackReason != tc.reason {
					t.Errorf("stats %+v, want fallback %q", st, tc.reason)
				}
				if st.BytesFetched < int64(len(v2)) {
					t.Errorf("fetched %d bytes, less than the full artifact", st.BytesFetched)
				}
			}
			// Only the verified download is left: no delta, no patch
			// output, no checkpoint.
			entries, err := os.ReadDir(c.dlDir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 || entries[0].Name() != full.SHA256 {
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				t.Errorf("downloads dir holds %v, want only %s", names, full.SHA256)
			}
			if got, _ := os.ReadFile(installedPath); !bytes.Equal(got, tc.installed) {
				t.Error("the installed file was changed")
			}
		})
	}
}

// TestDownloadDeltaDownloaded checks that a verified full download is
// reused without fetching anything, delta or not.
func TestDownloadDeltaDownloaded(t *testing.T) {
	v1, v2 := agentBuilds(t)
	repo := newTestRepo(t)
	repo.addTarget("outpost-agent", "1.0.1", TypeAgent, "linux-arm64", v2)
	repo.addDelta("outpost-agent", "1.0.1", "1.0.0", "linux-arm64", mustEncode(t, v1, v2), nil)
	repo.publish()
	c := newTestClient(t, repo, "", nil)
	ctx := context.Background()
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	full, err := c.Lookup("outpost-agent", "1.0.1", "linux-arm64")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Download(ctx, full, nil); err != nil {
		t.Fatal(err)
	}
	installedPath := filepath.Join(t.TempDir(), "outpost-agent")
	if err := os.WriteFile(installedPath, v1, 0o755); err != nil {
		t.Fatal(err)
	}
	n := len(repo.rangeLog())
	if _, st, err := c.DownloadDelta(ctx, full, installedPath, "1.0.0", nil); err != nil || st.BytesFetched != 0 || len(repo.rangeLog()) != n {
		t.Fatalf("DownloadDelta after Download: %v %+v, %d requests", err, st, len(repo.rangeLog())-n)
	}
}

// TestDownloadDeltaCanceled checks that cancellation is returned, not
// answered with a full download.
func TestDownloadDeltaCanceled(t *testing.T) {
	v1, v2 := agentBuilds(t)
	repo := newTestRepo(t)
	repo.addTarget("outpost-agent", "1.0.1", TypeAgent, "linux-arm64", v2)
	repo.addDelta("outpost-agent", "1.0.1", "1.0.0", "linux-arm64", mustEncode(t, v1, v2), nil)
	repo.publish()
	c := newTestClient(t, repo, "", nil)
	ctx, cancel := context.WithCancel(context.Background())
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	full, err := c.Lookup("outpost-agent", "1.0.1", "linux-arm64")
	if err != nil {
		t.Fatal(err)
	}
	repo.setTargetHandler(func(w http.ResponseWriter, r *http.Request, data []byte) {
		cancel()
		<-r.Context().Done()
	})
	installedPath := filepath.Join(t.TempDir(), "outpost-agent")
	if err := os.WriteFile(installedPath, v1, 0o755); err != nil {
		t.Fatal(err)
	}
	_, st, err := c.DownloadDelta(ctx, full, installedPath, "1.0.0", nil)
	assertReason(t, err, ReasonCanceled)
	if st.FellBack {
		t.Errorf("stats %+v: fell back after cancellation", st)
	}
}
