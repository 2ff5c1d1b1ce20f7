package httpapi_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hub/ota"
	"github.com/outpost-edge/outpost/internal/otadelta"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"
)

// onlineKeys asks the hub for its online public keys.
func onlineKeys(t *testing.T, h *hubtest.Hub, rotate string) map[string]*metadata.Key {
	t.Helper()
	p := "/api/v1/tuf/online-keys"
	if rotate != "" {
		p += "?rotate=" + rotate
	}
	var resp struct {
		Keys []struct {
			Role string        `json:"role"`
			Key  *metadata.Key `json:"key"`
		} `json:"keys"`
	}
	h.API(t, "POST", p, nil, http.StatusOK, &resp)
	out := map[string]*metadata.Key{}
	for _, k := range resp.Keys {
		out[k.Role] = k.Key
	}
	if len(out) != 3 {
		t.Fatalf("online keys: got roles %v, want targets, snapshot, timestamp", out)
	}
	return out
}

// signRoot signs r with every key in signers and returns its JSON.
func signRoot(t *testing.T, r *metadata.Metadata[metadata.RootType], signers ...ed25519.PrivateKey) []byte {
	t.Helper()
	r.ClearSignatures()
	for _, k := range signers {
		s, err := ota.Signer(k)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Sign(s); err != nil {
			t.Fatal(err)
		}
	}
	data, err := r.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func newKey(t *testing.T) (ed25519.PrivateKey, *metadata.Key) {
	t.Helper()
	priv, err := ota.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, _, err := ota.PublicKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

// buildRoot makes root metadata of version v listing rootPub and online.
func buildRoot(t *testing.T, v int64, rootPub *metadata.Key, online map[string]*metadata.Key) *metadata.Metadata[metadata.RootType] {
	t.Helper()
	r := metadata.Root(time.Now().Add(365 * 24 * time.Hour).UTC().Truncate(time.Second))
	r.Signed.Version = v
	if err := r.Signed.AddKey(rootPub, metadata.ROOT); err != nil {
		t.Fatal(err)
	}
	for role, k := range online {
		if err := r.Signed.AddKey(k, role); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// putRoot uploads a root and returns the status and body.
func putRoot(t *testing.T, h *hubtest.Hub, data []byte) (int, string) {
	t.Helper()
	return rawDo(t, h, "PUT", "/api/v1/tuf/root", bytes.NewReader(data), "Bearer "+h.Token)
}

func rawDo(t *testing.T, h *hubtest.Hub, method, p string, body io.Reader, authz string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, h.HTTPURL()+p, body)
	if err != nil {
		t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := h.Client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, p, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// initKeys runs the key ceremony against h and returns the root key and
// the signed root v1.
func initKeys(t *testing.T, h *hubtest.Hub) (ed25519.PrivateKey, []byte) {
	t.Helper()
	online := onlineKeys(t, h, "")
	rootPriv, rootPub := newKey(t)
	data := signRoot(t, buildRoot(t, 1, rootPub, online), rootPriv)
	if status, body := putRoot(t, h, data); status != http.StatusOK {
		t.Fatalf("PUT root: %d %s", status, body)
	}
	return rootPriv, data
}

func publish(t *testing.T, h *hubtest.Hub, name, version, typ, platform string, blob []byte) (int, string) {
	t.Helper()
	q := url.Values{"name": {name}, "version": {version}, "type": {typ}, "platform": {platform}}
	return rawDo(t, h, "POST", "/api/v1/artifacts?"+q.Encode(), bytes.NewReader(blob), "Bearer "+h.Token)
}

// basicAuth adds device credentials to every request.
type basicAuth struct {
	user, pw string
	next     http.RoundTripper
}

func (b basicAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.SetBasicAuth(b.user, b.pw)
	return b.next.RoundTrip(r)
}

// newUpdater returns a go-tuf client of h trusting root, caching in dir.
func newUpdater(t *testing.T, h *hubtest.Hub, root []byte, dir, user, pw string) *updater.Updater {
	t.Helper()
	cfg, err := config.New(h.HTTPURL()+"/tuf/metadata", root)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RemoteTargetsURL = h.HTTPURL() + "/tuf/targets"
	cfg.LocalMetadataDir = filepath.Join(dir, "metadata")
	cfg.LocalTargetsDir = filepath.Join(dir, "targets")
	f := fetcher.NewDefaultFetcher()
	f.SetHTTPClient(&http.Client{Transport: basicAuth{user, pw, &http.Transport{DisableKeepAlives: true}}, Timeout: 10 * time.Second})
	cfg.Fetcher = f
	up, err := updater.New(cfg)
	if err != nil {
		t.Fatalf("updater.New: %v", err)
	}
	return up
}

func TestOTAPublishAndVerifyWithUpdater(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	pw := h.AddDevice(t, "pump-7")
	_, root := initKeys(t, h)
	blob := bytes.Repeat([]byte("outpost agent build 1.2.3\n"), 1000)
	if status, body := publish(t, h, "outpost-agent", "1.2.3", "agent", "linux/arm64", blob); status != http.StatusCreated {
		t.Fatalf("publish: %d %s", status, body)
	}

	// A device joining now gets the root in its join response.
	var add struct {
		JoinToken string `json:"join_token"`
	}
	h.API(t, "POST", "/api/v1/devices", map[string]any{"id": "pump-8"}, http.StatusCreated, &add)
	var joined struct {
		TUFRoot json.RawMessage `json:"tuf_root"`
	}
	h.API(t, "POST", "/api/v1/join", map[string]string{"token": add.JoinToken}, http.StatusOK, &joined)
	joinedRoot, err := metadata.Root().FromBytes(joined.TUFRoot)
	if err != nil || joinedRoot.Signed.Version != 1 {
		t.Fatalf("join response tuf_root: %v (%s)", err, joined.TUFRoot)
	}

	// Several fresh clients: go-tuf picks either hash for the blob's name.
	for i := range 4 {
		up := newUpdater(t, h, joined.TUFRoot, t.TempDir(), "pump-7", pw)
		if err := up.Refresh(); err != nil {
			t.Fatalf("Refresh: %v", err)
		}
		tf, err := up.GetTargetInfo("outpost-agent/1.2.3/linux-arm64")
		if err != nil {
			t.Fatalf("GetTargetInfo: %v", err)
		}
		var custom ota.Custom
		if tf.Custom == nil || json.Unmarshal(*tf.Custom, &custom) != nil {
			t.Fatalf("custom metadata missing: %+v", tf)
		}
		want := ota.Spec{Name: "outpost-agent", Version: "1.2.3", Type: "agent", Platform: "linux-arm64"}
		if custom.Outpost != want {
			t.Errorf("custom = %+v, want %+v", custom.Outpost, want)
		}
		_, data, err := up.DownloadTarget(tf, "", "")
		if err != nil {
			t.Fatalf("DownloadTarget (client %d): %v", i, err)
		}
		if !bytes.Equal(data, blob) {
			t.Fatalf("downloaded %d bytes, want the %d published", len(data), len(blob))
		}
		if _, err := up.GetTargetInfo("outpost-agent/9.9.9/linux-arm64"); err == nil {
			t.Error("GetTargetInfo of an unpublished target succeeded")
		}
	}
	_ = root

	// The blob is served under both of its hashes.
	s256, s512 := sha256.Sum256(blob), sha512.Sum512(blob)
	for _, hx := range []string{hex.EncodeToString(s256[:]), hex.EncodeToString(s512[:])} {
		status, body := rawDo(t, h, "GET", "/tuf/targets/outpost-agent/1.2.3/"+hx+".linux-arm64", nil, "Bearer "+h.Token)
		if status != http.StatusOK || body != string(blob) {
			t.Errorf("GET blob by %d-char hash: status %d, %d bytes", len(hx), status, len(body))
		}
	}

	var list struct {
		Artifacts []ota.Artifact `json:"artifacts"`
	}
	h.API(t, "GET", "/api/v1/artifacts?name=outpost-agent", nil, http.StatusOK, &list)
	if len(list.Artifacts) != 1 || list.Artifacts[0].SHA256 != hex.EncodeToString(s256[:]) || list.Artifacts[0].Length != int64(len(blob)) || list.Artifacts[0].PublishedAt.IsZero() {
		t.Errorf("artifacts = %+v", list.Artifacts)
	}
	h.API(t, "GET", "/api/v1/artifacts?name=other", nil, http.StatusOK, &list)
	if len(list.Artifacts) != 0 {
		t.Errorf("artifacts of another name = %+v", list.Artifacts)
	}
}

func TestOTARangeRequest(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	pw := h.AddDevice(t, "pump-7")
	initKeys(t, h)
	blob := []byte("0123456789abcdefghijklmnopqrstuvwxyz")
	if status, body := publish(t, h, "cfg", "1.0.0", "file", "any", blob); status != http.StatusCreated {
		t.Fatalf("publish: %d %s", status, body)
	}
	sum := sha256.Sum256(blob)
	req, _ := http.NewRequest("GET", h.HTTPURL()+"/tuf/targets/cfg/1.0.0/"+hex.EncodeToString(sum[:])+".any", nil)
	req.SetBasicAuth("pump-7", pw)
	req.Header.Set("Range", "bytes=10-19")
	resp, err := h.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusPartialContent || string(got) != "abcdefghij" {
		t.Errorf("Range bytes=10-19: status %d body %q, want 206 %q", resp.StatusCode, got, "abcdefghij")
	}
	if resp.Header.Get("Accept-Ranges") != "bytes" || resp.Header.Get("Content-Range") != "bytes 10-19/36" {
		t.Errorf("headers: Accept-Ranges %q Content-Range %q", resp.Header.Get("Accept-Ranges"), resp.Header.Get("Content-Range"))
	}
}

func TestOTAAuth(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	pw := h.AddDevice(t, "pump-7")
	initKeys(t, h)
	get := func(setAuth func(*http.Request)) int {
		req, _ := http.NewRequest("GET", h.HTTPURL()+"/tuf/metadata/1.root.json", nil)
		setAuth(req)
		resp, err := h.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		name string
		auth func(*http.Request)
		want int
	}{
		{"device", func(r *http.Request) { r.SetBasicAuth("pump-7", pw) }, http.StatusOK},
		{"admin token", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+h.Token) }, http.StatusOK},
		{"wrong password", func(r *http.Request) { r.SetBasicAuth("pump-7", pw+"x") }, http.StatusUnauthorized},
		{"unknown device", func(r *http.Request) { r.SetBasicAuth("pump-9", pw) }, http.StatusUnauthorized},
		{"bad token", func(r *http.Request) { r.Header.Set("Authorization", "Bearer nope") }, http.StatusUnauthorized},
		{"none", func(r *http.Request) {}, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := get(tc.auth); got != tc.want {
				t.Errorf("status %d, want %d", got, tc.want)
			}
		})
	}
	// A go-tuf client with a wrong password fails.
	up := newUpdater(t, h, mustRead(t, h, "root.json"), t.TempDir(), "pump-7", "wrong")
	if err := up.Refresh(); err == nil {
		t.Error("Refresh with a wrong password succeeded")
	}
}

func mustRead(t *testing.T, h *hubtest.Hub, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(h.DataDir, "ota", "metadata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func tufStatus(t *testing.T, h *hubtest.Hub) ota.Status {
	t.Helper()
	var st ota.Status
	h.API(t, "GET", "/api/v1/tuf/status", nil, http.StatusOK, &st)
	return st
}

func TestOTARootRejected(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	online := onlineKeys(t, h, "")
	rootPriv, rootPub := newKey(t)
	otherPriv, otherPub := newKey(t)

	// v1 listing one key but signed by another.
	if status, body := putRoot(t, h, signRoot(t, buildRoot(t, 1, rootPub, online), otherPriv)); status != http.StatusBadRequest || !strings.Contains(body, "root_rejected") {
		t.Errorf("root signed by a wrong key: %d %s, want 400 root_rejected", status, body)
	}
	if st := tufStatus(t, h); st.Initialised {
		t.Fatalf("after a refused root: status %+v, want uninitialised", st)
	}
	// v1 not listing the hub's online keys.
	_, strayPub := newKey(t)
	bad := map[string]*metadata.Key{"targets": strayPub, "snapshot": online["snapshot"], "timestamp": online["timestamp"]}
	if status, body := putRoot(t, h, signRoot(t, buildRoot(t, 1, rootPub, bad), rootPriv)); status != http.StatusBadRequest {
		t.Errorf("root with a foreign targets key: %d %s, want 400", status, body)
	}
	// Version 2 first.
	if status, body := putRoot(t, h, signRoot(t, buildRoot(t, 2, rootPub, online), rootPriv)); status != http.StatusConflict {
		t.Errorf("root version 2 before 1: %d %s, want 409", status, body)
	}

	v1 := signRoot(t, buildRoot(t, 1, rootPub, online), rootPriv)
	if status, body := putRoot(t, h, v1); status != http.StatusOK {
		t.Fatalf("good root: %d %s", status, body)
	}
	// v2 switching to another root key, signed by the new key only.
	if status, body := putRoot(t, h, signRoot(t, buildRoot(t, 2, otherPub, online), otherPriv)); status != http.StatusBadRequest {
		t.Errorf("v2 not signed by v1's root key: %d %s, want 400", status, body)
	}
	// Replaying v1.
	if status, body := putRoot(t, h, v1); status != http.StatusConflict {
		t.Errorf("replayed v1: %d %s, want 409", status, body)
	}
	if got := mustRead(t, h, "root.json"); !bytes.Equal(got, v1) {
		t.Error("root.json changed after refused uploads")
	}
	if _, err := os.Stat(filepath.Join(h.DataDir, "ota", "metadata", "2.root.json")); err == nil {
		t.Error("2.root.json exists after refused uploads")
	}
	if st := tufStatus(t, h); st.Roles["root"].Version != 1 || st.Roles["timestamp"].Version != 1 {
		t.Errorf("status after refused uploads: %+v", st)
	}
}

func TestOTARotation(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	pw := h.AddDevice(t, "pump-7")
	rootPriv, v1 := initKeys(t, h)
	if status, body := publish(t, h, "app", "1.0.0", "service", "linux/amd64", []byte("one")); status != http.StatusCreated {
		t.Fatalf("publish: %d %s", status, body)
	}
	cache := t.TempDir()
	up := newUpdater(t, h, v1, cache, "pump-7", pw)
	if err := up.Refresh(); err != nil {
		t.Fatalf("Refresh before rotation: %v", err)
	}
	oldTargetsKey := tufStatus(t, h).Roles["targets"].KeyIDs[0]

	// Rotate the targets key: the hub makes a pending key, root v2 lists it.
	rotated := onlineKeys(t, h, "targets")
	newID, _ := rotated["targets"].ID()
	if newID == oldTargetsKey {
		t.Fatal("rotate returned the old targets key")
	}
	if st := tufStatus(t, h); st.Roles["targets"].PendingKeyID != newID || st.Roles["targets"].KeyIDs[0] != oldTargetsKey {
		t.Fatalf("status before the new root: %+v", st.Roles["targets"])
	}
	// The hub still signs with the old key until the new root is in.
	if status, body := publish(t, h, "app", "1.0.1", "service", "linux/amd64", []byte("two")); status != http.StatusCreated {
		t.Fatalf("publish during rotation: %d %s", status, body)
	}
	r2, err := metadata.Root().FromBytes(v1)
	if err != nil {
		t.Fatal(err)
	}
	r2.Signed.Version = 2
	if err := r2.Signed.RevokeKey(oldTargetsKey, metadata.TARGETS); err != nil {
		t.Fatal(err)
	}
	if err := r2.Signed.AddKey(rotated["targets"], metadata.TARGETS); err != nil {
		t.Fatal(err)
	}
	if status, body := putRoot(t, h, signRoot(t, r2, rootPriv)); status != http.StatusOK {
		t.Fatalf("PUT root v2: %d %s", status, body)
	}
	if st := tufStatus(t, h); st.Roles["targets"].KeyIDs[0] != newID || st.Roles["targets"].PendingKeyID != "" || st.Roles["root"].Version != 2 {
		t.Fatalf("status after the new root: %+v", st.Roles)
	}
	if status, body := publish(t, h, "app", "1.0.2", "service", "linux/amd64", []byte("three")); status != http.StatusCreated {
		t.Fatalf("publish after rotation: %d %s", status, body)
	}

	// Rotate the root key itself: v3 signed by the old and the new key.
	newRootPriv, newRootPub := newKey(t)
	r3, _ := metadata.Root().FromBytes(signRoot(t, r2, rootPriv))
	r3.Signed.Version = 3
	oldRootID := r3.Signed.Roles[metadata.ROOT].KeyIDs[0]
	if err := r3.Signed.RevokeKey(oldRootID, metadata.ROOT); err != nil {
		t.Fatal(err)
	}
	if err := r3.Signed.AddKey(newRootPub, metadata.ROOT); err != nil {
		t.Fatal(err)
	}
	if status, body := putRoot(t, h, signRoot(t, r3, rootPriv)); status != http.StatusBadRequest {
		t.Errorf("root v3 signed by the old root key only: %d %s, want 400", status, body)
	}
	if status, body := putRoot(t, h, signRoot(t, r3, rootPriv, newRootPriv)); status != http.StatusOK {
		t.Fatalf("PUT root v3: %d %s", status, body)
	}

	// Clients that trust only v1 (fresh, and with the old cache) follow
	// the chain and see every artifact, verified with the new keys.
	for name, dir := range map[string]string{"fresh": t.TempDir(), "cached": cache} {
		up := newUpdater(t, h, v1, dir, "pump-7", pw)
		if err := up.Refresh(); err != nil {
			t.Fatalf("%s client: Refresh after rotation: %v", name, err)
		}
		if v := up.GetTrustedMetadataSet().Root.Signed.Version; v != 3 {
			t.Errorf("%s client trusts root v%d, want 3", name, v)
		}
		for _, v := range []string{"1.0.0", "1.0.1", "1.0.2"} {
			tf, err := up.GetTargetInfo("app/" + v + "/linux-amd64")
			if err != nil {
				t.Fatalf("%s client: GetTargetInfo %s: %v", name, v, err)
			}
			if _, _, err := up.DownloadTarget(tf, filepath.Join(t.TempDir(), "blob"), ""); err != nil {
				t.Errorf("%s client: DownloadTarget %s: %v", name, v, err)
			}
		}
	}
}

func TestOTAPublishBeforeInit(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	status, body := publish(t, h, "app", "1.0.0", "file", "any", []byte("x"))
	if status != http.StatusConflict || !strings.Contains(body, `"keys_not_initialised"`) || !strings.Contains(body, "outpost keys init") {
		t.Errorf("publish before init: %d %s", status, body)
	}
	if st := tufStatus(t, h); st.Initialised {
		t.Errorf("status before init: %+v", st)
	}
	status, body = rawDo(t, h, "GET", "/tuf/metadata/timestamp.json", nil, "Bearer "+h.Token)
	if status != http.StatusNotFound {
		t.Errorf("timestamp.json before init: %d %s", status, body)
	}
}

func TestOTAPublishConflictAndValidation(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	initKeys(t, h)
	if status, body := publish(t, h, "app", "1.0.0", "file", "any", []byte("first")); status != http.StatusCreated {
		t.Fatalf("publish: %d %s", status, body)
	}
	before := tufStatus(t, h).Roles["targets"].Version
	if status, body := publish(t, h, "app", "1.0.0", "file", "any", []byte("first")); status != http.StatusOK || !strings.Contains(body, `"created":false`) {
		t.Errorf("identical republish: %d %s, want 200", status, body)
	}
	if status, body := publish(t, h, "app", "1.0.0", "file", "any", []byte("second")); status != http.StatusConflict || !strings.Contains(body, `"conflict"`) {
		t.Errorf("conflicting republish: %d %s, want 409", status, body)
	}
	if after := tufStatus(t, h).Roles["targets"].Version; after != before {
		t.Errorf("targets version %d after republishing, want %d", after, before)
	}
	for _, tc := range []struct{ name, version, typ, platform string }{
		{"App", "1.0.0", "file", "any"},
		{"..", "1.0.0", "file", "any"},
		{strings.Repeat("a", 65), "1.0.0", "file", "any"},
		{"app", "1.0", "file", "any"},
		{"app", "01.0.0", "file", "any"},
		{"app", "1.0.0", "firmware", "any"},
		{"app", "1.0.0", "file", "linux"},
		{"app", "1.0.0", "file", "../x"},
	} {
		if status, body := publish(t, h, tc.name, tc.version, tc.typ, tc.platform, []byte("x")); status != http.StatusBadRequest {
			t.Errorf("publish %+v: %d %s, want 400", tc, status, body)
		}
	}
}

func TestOTAPathTraversal(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	initKeys(t, h)
	if status, body := publish(t, h, "app", "1.0.0", "file", "any", []byte("x")); status != http.StatusCreated {
		t.Fatalf("publish: %d %s", status, body)
	}
	for _, p := range []string{
		"/tuf/targets/../keys/targets.key",
		"/tuf/targets/%2e%2e/keys/targets.key",
		"/tuf/targets/app/../../keys/targets.key",
		"/tuf/targets/app/1.0.0/..%2f..%2f..%2fkeys%2ftargets.key",
		"/tuf/targets//etc/passwd",
		"/tuf/targets/",
		"/tuf/targets/app",
		"/tuf/targets/.upload-1",
		"/tuf/metadata/..%2fkeys%2ftargets.key",
		"/tuf/metadata/targets.key",
		"/tuf/metadata/0.root.json",
		"/tuf/metadata/snapshot.json",
	} {
		status, body := rawDo(t, h, "GET", p, nil, "Bearer "+h.Token)
		if status != http.StatusNotFound && status != http.StatusBadRequest {
			t.Errorf("GET %s: %d, want 404 or 400", p, status)
		}
		if strings.Contains(body, "PRIVATE KEY") {
			t.Errorf("GET %s leaked a private key", p)
		}
	}
	fi, err := os.Stat(filepath.Join(h.DataDir, "ota", "keys"))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("keys directory: %v mode %v, want 0700", err, fi.Mode().Perm())
	}
	fi, err = os.Stat(filepath.Join(h.DataDir, "ota", "keys", "targets.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("targets key: %v mode %v, want 0600", err, fi.Mode().Perm())
	}
}

func TestOTARefreshTimestamp(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	pw := h.AddDevice(t, "pump-7")
	_, root := initKeys(t, h)
	ts := func() *metadata.Metadata[metadata.TimestampType] {
		m, err := metadata.Timestamp().FromBytes(mustRead(t, h, "timestamp.json"))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	before := ts()
	if d := time.Until(before.Signed.Expires); d < 23*time.Hour || d > 25*time.Hour {
		t.Errorf("timestamp expires in %s, want about a day", d)
	}
	if err := h.OTA().RefreshTimestamp(time.Now()); err != nil {
		t.Fatal(err)
	}
	if v := ts().Signed.Version; v != before.Signed.Version {
		t.Errorf("a fresh timestamp was re-signed: version %d → %d", before.Signed.Version, v)
	}
	later := time.Now().Add(13 * time.Hour)
	if err := h.OTA().RefreshTimestamp(later); err != nil {
		t.Fatal(err)
	}
	after := ts()
	if after.Signed.Version != before.Signed.Version+1 || !after.Signed.Expires.After(before.Signed.Expires) {
		t.Errorf("after RefreshTimestamp(+13h): version %d expires %s; before version %d expires %s",
			after.Signed.Version, after.Signed.Expires, before.Signed.Version, before.Signed.Expires)
	}
	// Six days on, snapshot is re-signed too and a client whose clock is
	// there still accepts the metadata.
	if err := h.OTA().RefreshTimestamp(time.Now().Add(6*24*time.Hour + time.Hour)); err != nil {
		t.Fatal(err)
	}
	if st := tufStatus(t, h); st.Roles["snapshot"].Version < 2 {
		t.Errorf("snapshot not re-signed near its expiry: %+v", st.Roles["snapshot"])
	}
	up := newUpdater(t, h, root, t.TempDir(), "pump-7", pw)
	up.UnsafeSetRefTime(time.Now().Add(6*24*time.Hour + 2*time.Hour))
	if err := up.Refresh(); err != nil {
		t.Errorf("Refresh six days on: %v", err)
	}
}

// publishDelta publishes blob as name/version/platform with a delta from
// version from.
func publishDelta(t *testing.T, h *hubtest.Hub, name, version, from, platform string, blob []byte) (int, string) {
	t.Helper()
	q := url.Values{"name": {name}, "version": {version}, "type": {"agent"}, "platform": {platform}, "delta_from": {from}}
	return rawDo(t, h, "POST", "/api/v1/artifacts?"+q.Encode(), bytes.NewReader(blob), "Bearer "+h.Token)
}

func TestOTAPublishDelta(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	pw := h.AddDevice(t, "pump-7")
	_, root := initKeys(t, h)
	v1 := make([]byte, 512<<10)
	for i := range v1 {
		v1[i] = byte(i*7 + i/1000)
	}
	v2 := append([]byte(nil), v1...)
	copy(v2[1000:], "1.0.1")
	copy(v2[300<<10:], "patched")
	if status, body := publish(t, h, "outpost-agent", "1.0.0", "agent", "linux/arm64", v1); status != http.StatusCreated {
		t.Fatalf("publish 1.0.0: %d %s", status, body)
	}
	status, body := publishDelta(t, h, "outpost-agent", "1.0.1", "1.0.0", "linux/arm64", v2)
	if status != http.StatusCreated {
		t.Fatalf("publish 1.0.1 with delta_from=1.0.0: %d %s", status, body)
	}
	var resp struct {
		Artifact ota.Artifact `json:"artifact"`
		Delta    ota.Artifact `json:"delta"`
	}
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Artifact.Path != "outpost-agent/1.0.1/linux-arm64" || resp.Delta.Path != "outpost-agent/1.0.1/linux-arm64.from-1.0.0" ||
		resp.Delta.DeltaFrom != "1.0.0" || resp.Delta.DeltaFor != resp.Artifact.Path || resp.Delta.FullLength != int64(len(v2)) ||
		resp.Delta.Length >= resp.Artifact.Length/10 || resp.Delta.DeltaPercent >= 10 {
		t.Fatalf("response: %s", body)
	}

	// A device's TUF client finds both targets signed and downloads the
	// delta, which patches 1.0.0 into 1.0.1.
	up := newUpdater(t, h, root, t.TempDir(), "pump-7", pw)
	if err := up.Refresh(); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if _, err := up.GetTargetInfo(resp.Artifact.Path); err != nil {
		t.Fatalf("full target: %v", err)
	}
	dtf, err := up.GetTargetInfo(resp.Delta.Path)
	if err != nil {
		t.Fatalf("delta target: %v", err)
	}
	_, patch, err := up.DownloadTarget(dtf, "", "")
	if err != nil {
		t.Fatalf("DownloadTarget(delta): %v", err)
	}
	var out bytes.Buffer
	if _, err := otadelta.Decode(bytes.NewReader(patch), v1, &out, int64(len(v2))); err != nil || !bytes.Equal(out.Bytes(), v2) {
		t.Fatalf("applying the delta: %v", err)
	}

	var list struct {
		Artifacts []ota.Artifact `json:"artifacts"`
	}
	h.API(t, "GET", "/api/v1/artifacts?name=outpost-agent", nil, http.StatusOK, &list)
	if len(list.Artifacts) != 3 || list.Artifacts[2].DeltaPercent != resp.Delta.DeltaPercent {
		t.Errorf("artifacts = %+v", list.Artifacts)
	}

	// A delta from a version that was never published is refused, and
	// nothing is published.
	before := tufStatus(t, h).Roles["targets"].Version
	// (Small bodies: a refusal comes before the body is read, and a large
	// body would meet a closed connection.)
	status, body = publishDelta(t, h, "outpost-agent", "1.0.2", "0.9.0", "linux/arm64", v2[:1024])
	if status != http.StatusNotFound || !strings.Contains(body, `"delta_base_not_found"`) || !strings.Contains(body, "outpost-agent/0.9.0/linux-arm64 is not published") {
		t.Errorf("delta_from an unknown version: %d %s, want 404 delta_base_not_found", status, body)
	}
	if status, body := publishDelta(t, h, "outpost-agent", "1.0.2", "one", "linux/arm64", v2[:1024]); status != http.StatusBadRequest {
		t.Errorf("delta_from a bad version: %d %s, want 400", status, body)
	}
	if after := tufStatus(t, h).Roles["targets"].Version; after != before {
		t.Errorf("targets version %d after refused deltas, want %d", after, before)
	}
}
