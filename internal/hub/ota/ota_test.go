package ota

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// initService returns a service with root v1 accepted.
func initService(t *testing.T, maxBytes int64) *Service {
	t.Helper()
	s, err := New(Options{Dir: t.TempDir(), MaxArtifactBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	online, err := s.OnlineKeys("")
	if err != nil {
		t.Fatal(err)
	}
	rootPriv, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	rootPub, _, err := PublicKey(rootPriv)
	if err != nil {
		t.Fatal(err)
	}
	r := metadata.Root(time.Now().Add(time.Hour * 24 * 30))
	if err := r.Signed.AddKey(rootPub, metadata.ROOT); err != nil {
		t.Fatal(err)
	}
	for _, k := range online {
		if err := r.Signed.AddKey(k.Key, k.Role); err != nil {
			t.Fatal(err)
		}
	}
	signer, err := Signer(rootPriv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Sign(signer); err != nil {
		t.Fatal(err)
	}
	data, err := r.ToBytes(false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutRoot(data); err != nil {
		t.Fatalf("PutRoot: %v", err)
	}
	return s
}

func TestPublishTooLarge(t *testing.T) {
	s := initService(t, 10)
	sp := Spec{Name: "app", Version: "1.0.0", Type: TypeFile, Platform: "any"}
	if _, _, err := s.Publish(sp, strings.NewReader("01234567890")); !errors.Is(err, ErrTooLarge) {
		t.Errorf("11 bytes with a limit of 10: %v, want ErrTooLarge", err)
	}
	if _, created, err := s.Publish(sp, strings.NewReader("0123456789")); err != nil || !created {
		t.Errorf("10 bytes with a limit of 10: created %v, %v", created, err)
	}
	if _, _, err := s.Publish(Spec{Name: "app", Version: "1.0.1", Type: TypeFile, Platform: "any"}, strings.NewReader("")); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty artifact: %v, want ErrInvalid", err)
	}
}

func TestConcurrentPublish(t *testing.T) {
	s := initService(t, 0)
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sp := Spec{Name: "app", Version: fmt.Sprintf("1.0.%d", i), Type: TypeService, Platform: "linux-arm64"}
			_, _, err := s.Publish(sp, bytes.NewReader([]byte(sp.Version)))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	arts, err := s.Artifacts("app")
	if err != nil || len(arts) != n {
		t.Fatalf("Artifacts: %d, %v; want %d", len(arts), err, n)
	}
	st, err := s.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Roles[metadata.TARGETS].Version != n+1 || st.Roles[metadata.TIMESTAMP].Version != n+1 {
		t.Errorf("versions after %d publishes: %+v", n, st.Roles)
	}
}

func TestCleanRelPath(t *testing.T) {
	for p, want := range map[string]bool{
		"app/1.0.0/abc.any": true,
		"../keys/x":         false,
		"app/../../x":       false,
		"/etc/passwd":       false,
		"app//x":            false,
		"app/.upload-1":     false,
		"":                  false,
		"app\\..\\x":        false,
	} {
		if got := cleanRelPath(p); got != want {
			t.Errorf("cleanRelPath(%q) = %v, want %v", p, got, want)
		}
	}
}
