package ota

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

const (
	testDevice   = "dev-1"
	testPassword = "s3cret"
)

// testRepo is a TUF repository laid out as the hub serves it, signed with
// fresh ed25519 keys, behind an httptest server that checks Basic auth.
type testRepo struct {
	t    *testing.T
	keys map[string]ed25519.PrivateKey // role → signing key

	root      *metadata.Metadata[metadata.RootType]
	targets   *metadata.Metadata[metadata.TargetsType]
	snapshot  *metadata.Metadata[metadata.SnapshotType]
	timestamp *metadata.Metadata[metadata.TimestampType]
	rootBytes []byte // 1.root.json, the trusted root given at join

	srv *httptest.Server

	mu sync.Mutex // guards the fields below
	// files maps a URL path under /tuf/ ("metadata/timestamp.json",
	// "targets/app/1.0.0/<sha>.linux-arm64") to its bytes.
	files map[string][]byte
	// targetHandler, if set, serves targets instead of http.ServeContent.
	targetHandler func(w http.ResponseWriter, r *http.Request, data []byte)
	// ranges logs the Range header of every target request ("" if none).
	ranges []string
}

func newTestRepo(t *testing.T) *testRepo {
	t.Helper()
	r := &testRepo{t: t, keys: map[string]ed25519.PrivateKey{}, files: map[string][]byte{}}
	exp := time.Now().Add(24 * time.Hour).UTC()
	r.root = metadata.Root(time.Now().AddDate(1, 0, 0).UTC())
	r.targets = metadata.Targets(exp)
	r.snapshot = metadata.Snapshot(exp)
	r.timestamp = metadata.Timestamp(exp)
	// publish bumps every version before signing, so the first one is 1.
	r.targets.Signed.Version, r.snapshot.Signed.Version, r.timestamp.Signed.Version = 0, 0, 0
	for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		_, priv, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		r.keys[role] = priv
		key, err := metadata.KeyFromPublicKey(priv.Public())
		if err != nil {
			t.Fatal(err)
		}
		if err := r.root.Signed.AddKey(key, role); err != nil {
			t.Fatal(err)
		}
	}
	r.rootBytes = signMeta(t, r.root, r.keys[metadata.ROOT])
	r.files["metadata/1.root.json"] = r.rootBytes
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

// signMeta signs m with keys (replacing its signatures) and encodes it.
func signMeta[T metadata.Roles](t *testing.T, m *metadata.Metadata[T], keys ...ed25519.PrivateKey) []byte {
	t.Helper()
	m.ClearSignatures()
	for _, k := range keys {
		s, err := signature.LoadSigner(k, crypto.Hash(0))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Sign(s); err != nil {
			t.Fatal(err)
		}
	}
	b, err := m.ToBytes(false)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// addTarget signs data as artifact name/version/platform (at the next
// publish) and serves it.
func (r *testRepo) addTarget(name, version, typ, platform string, data []byte) string {
	r.t.Helper()
	p := name + "/" + version + "/" + platform
	tf, err := metadata.TargetFile().FromBytes(p, data, "sha256")
	if err != nil {
		r.t.Fatal(err)
	}
	custom := json.RawMessage(fmt.Sprintf(`{"outpost":{"name":%q,"version":%q,"type":%q,"platform":%q}}`, name, version, typ, platform))
	tf.Custom = &custom
	r.targets.Signed.Targets[p] = tf
	sha := hex.EncodeToString(tf.Hashes["sha256"])
	r.setFile("targets/"+name+"/"+version+"/"+sha+"."+platform, data)
	return sha
}

// publish signs new versions of targets, snapshot and timestamp.
func (r *testRepo) publish() {
	r.signTargets(r.keys[metadata.TARGETS])
	r.signSnapshot(r.targets.Signed.Version)
	r.signTimestamp(r.snapshot.Signed.Version)
}

func (r *testRepo) signTargets(key ed25519.PrivateKey) {
	r.targets.Signed.Version++
	r.setFile(fmt.Sprintf("metadata/%d.targets.json", r.targets.Signed.Version), signMeta(r.t, r.targets, key))
}

func (r *testRepo) signSnapshot(targetsVersion int64) {
	r.snapshot.Signed.Version++
	r.snapshot.Signed.Meta["targets.json"] = metadata.MetaFile(targetsVersion)
	r.setFile(fmt.Sprintf("metadata/%d.snapshot.json", r.snapshot.Signed.Version), signMeta(r.t, r.snapshot, r.keys[metadata.SNAPSHOT]))
}

func (r *testRepo) signTimestamp(snapshotVersion int64) {
	r.timestamp.Signed.Version++
	r.timestamp.Signed.Meta["snapshot.json"] = metadata.MetaFile(snapshotVersion)
	r.setFile("metadata/timestamp.json", signMeta(r.t, r.timestamp, r.keys[metadata.TIMESTAMP]))
}

func (r *testRepo) setFile(p string, b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.files[p] = b
}

func (r *testRepo) file(p string) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.files[p]
}

// saveFiles and restoreFiles let a test serve an older repository state.
func (r *testRepo) saveFiles() map[string][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := make(map[string][]byte, len(r.files))
	for k, v := range r.files {
		m[k] = v
	}
	return m
}

func (r *testRepo) restoreFiles(m map[string][]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.files = m
}

func (r *testRepo) setTargetHandler(h func(w http.ResponseWriter, r *http.Request, data []byte)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.targetHandler = h
}

func (r *testRepo) rangeLog() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ranges...)
}

func (r *testRepo) serve(w http.ResponseWriter, req *http.Request) {
	if id, pw, ok := req.BasicAuth(); !ok || id != testDevice || pw != testPassword {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	p, ok := strings.CutPrefix(req.URL.Path, "/tuf/")
	if !ok {
		http.NotFound(w, req)
		return
	}
	r.mu.Lock()
	data, found := r.files[p]
	h := r.targetHandler
	isTarget := strings.HasPrefix(p, "targets/")
	if isTarget {
		r.ranges = append(r.ranges, req.Header.Get("Range"))
	}
	r.mu.Unlock()
	if !found {
		http.NotFound(w, req)
		return
	}
	if isTarget && h != nil {
		h(w, req, data)
		return
	}
	http.ServeContent(w, req, "", time.Time{}, bytes.NewReader(data))
}
