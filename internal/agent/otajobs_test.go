package agent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/ota"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// signedRoot returns a valid signed root.json with one ed25519 key for
// every role.
func signedRoot(t *testing.T) []byte {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	root := metadata.Root(time.Now().AddDate(1, 0, 0).UTC())
	key, err := metadata.KeyFromPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		if err := root.Signed.AddKey(key, role); err != nil {
			t.Fatal(err)
		}
	}
	s, err := signature.LoadSigner(priv, crypto.Hash(0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := root.Sign(s); err != nil {
		t.Fatal(err)
	}
	b, err := root.ToBytes(false)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOTAClientTrustsFirstRootOnFirstUse: a device that joined before the
// hub had update keys has no root; at its first update it fetches the
// hub's root version 1 with its device credentials and keeps it.
func TestOTAClientTrustsFirstRootOnFirstUse(t *testing.T) {
	root := signedRoot(t)
	var served bool
	hub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pw, ok := r.BasicAuth()
		if !ok || user != device || pw != "secret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.URL.Path != "/tuf/metadata/1.root.json" || served {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		served = true
		_, _ = w.Write(root)
	}))
	defer hub.Close()

	cfg := testConfig("mqtt://127.0.0.1:1")
	cfg.HubURL = hub.URL
	dir := t.TempDir()
	a, err := New(cfg, Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.otaClient(context.Background()); err != nil {
		t.Fatalf("otaClient: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "ota", "tuf", "root.json"))
	if err != nil || !bytes.Equal(got, root) {
		t.Errorf("stored root %d bytes (%v), want the hub's", len(got), err)
	}

	// A hub without keys (404): the job fails with reason io, nothing is stored.
	dir2 := t.TempDir()
	a2, err := New(cfg, Options{DataDir: dir2})
	if err != nil {
		t.Fatal(err)
	}
	_, err = a2.otaClient(context.Background())
	var re reasonError
	if err == nil || !errors.As(err, &re) || re.Reason() != string(ota.ReasonIO) {
		t.Errorf("otaClient against a hub without keys: %v, want reason io", err)
	}
	if _, err := os.Stat(filepath.Join(dir2, "ota", "tuf", "root.json")); err == nil {
		t.Error("a root was stored although the hub had none")
	}

	// No hub_url at all: not_configured.
	cfg.HubURL = ""
	a3, err := New(cfg, Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a3.otaClient(context.Background()); !errors.As(err, &re) || re.Reason() != reasonNotConfigured {
		t.Errorf("otaClient without hub_url: %v, want reason %s", err, reasonNotConfigured)
	}
}
