package ota

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newTestClient returns a Client of repo with state in dataDir (a fresh
// directory if empty).
func newTestClient(t *testing.T, repo *testRepo, dataDir string, mod func(*Config)) *Client {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	cfg := Config{
		HubURL:      repo.srv.URL,
		DeviceID:    testDevice,
		Password:    testPassword,
		DataDir:     dataDir,
		TrustedRoot: repo.rootBytes,
		Transport:   tr,
		SyncEvery:   64 << 10,
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// installed creates an already-installed file and returns its path and
// contents, to check that attacks leave it untouched.
func installed(t *testing.T) (string, []byte) {
	t.Helper()
	dest := filepath.Join(t.TempDir(), "app.conf")
	old := []byte("installed version 1.0.0\n")
	if err := os.WriteFile(dest, old, 0o644); err != nil {
		t.Fatal(err)
	}
	return dest, old
}

func assertUntouched(t *testing.T, dest string, old []byte) {
	t.Helper()
	got, err := os.ReadFile(dest)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, old) {
		t.Fatalf("installed file changed: %q", got)
	}
}

func assertReason(t *testing.T, err error, want Reason) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want reason %s", want)
	}
	var oe *Error
	if !errors.As(err, &oe) {
		t.Fatalf("error %v is not an *ota.Error", err)
	}
	if oe.Reason != want {
		t.Fatalf("reason %s, want %s (error: %v)", oe.Reason, want, err)
	}
}

// update runs the whole agent flow for a file artifact.
func update(ctx context.Context, c *Client, name, version, platform, dest string) (DownloadStats, error) {
	if err := c.Refresh(ctx); err != nil {
		return DownloadStats{}, err
	}
	tg, err := c.Lookup(name, version, platform)
	if err != nil {
		return DownloadStats{}, err
	}
	path, st, err := c.Download(ctx, tg, nil)
	if err != nil {
		return st, err
	}
	if err := InstallFile(ctx, path, dest, 0o644, nil, 0); err != nil {
		return st, err
	}
	return st, c.MarkInstalled(name, version)
}

func TestUpdate(t *testing.T) {
	repo := newTestRepo(t)
	data := randomBytes(t, 300<<10)
	sha := repo.addTarget("app.conf", "1.1.0", TypeFile, PlatformAny, data)
	repo.publish()
	c := newTestClient(t, repo, "", nil)
	dest, _ := installed(t)
	ctx := context.Background()

	var last, total int64
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	tg, err := c.Lookup("app.conf", "1.1.0", "linux-arm64")
	if err != nil {
		t.Fatal(err)
	}
	if tg.Meta != (ArtifactMeta{Name: "app.conf", Version: "1.1.0", Type: TypeFile, Platform: PlatformAny}) || tg.SHA256 != sha || tg.Length != int64(len(data)) {
		t.Fatalf("target %+v", tg)
	}
	path, st, err := c.Download(ctx, tg, func(done, tot int64) { last, total = done, tot })
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(c.dlDir, sha) || last != total || total != int64(len(data)) {
		t.Fatalf("path %s, progress %d/%d", path, last, total)
	}
	if st.BytesFetched != int64(len(data)) || st.Resumes != 0 || st.BytesRefetched != 0 {
		t.Fatalf("stats %+v", st)
	}
	if err := InstallFile(ctx, path, dest, 0o640, nil, 0); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, data) {
		t.Fatal("installed file differs")
	}
	if fi, _ := os.Stat(dest); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v", fi.Mode())
	}
	// A second Download finds the verified file and fetches nothing.
	if _, st, err := c.Download(ctx, tg, nil); err != nil || st.BytesFetched != 0 {
		t.Fatalf("second download: %v %+v", err, st)
	}
	if err := c.MarkInstalled("app.conf", "1.1.0"); err != nil {
		t.Fatal(err)
	}
	if v, err := c.InstalledVersion("app.conf"); err != nil || v != "1.1.0" {
		t.Fatalf("installed version %q %v", v, err)
	}
	// Metadata persisted by go-tuf lets a new client (after a restart)
	// refresh again with nothing changed.
	c2 := newTestClient(t, repo, c.cfg.DataDir, nil)
	if err := c2.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"root.json", "timestamp.json", "snapshot.json", "targets.json"} {
		if _, err := os.Stat(filepath.Join(c.tufDir, f)); err != nil {
			t.Error(err)
		}
	}
}

func TestLookupBeforeRefresh(t *testing.T) {
	repo := newTestRepo(t)
	repo.publish()
	c := newTestClient(t, repo, "", nil)
	_, err := c.Lookup("app", "1.0.0", "linux-arm64")
	assertReason(t, err, ReasonIO)
	_, err = c.Lookup("../etc", "1.0.0", "linux-arm64")
	assertReason(t, err, ReasonInvalid)
}

func TestWrongCredentials(t *testing.T) {
	repo := newTestRepo(t)
	repo.publish()
	c := newTestClient(t, repo, "", func(cfg *Config) { cfg.Password = "wrong" })
	assertReason(t, c.Refresh(context.Background()), ReasonUnauthorized)
}

func TestArbitrarySoftware(t *testing.T) {
	evil := []byte("#!/bin/sh\nrm -rf /\n")
	tests := []struct {
		name   string
		attack func(r *testRepo)
		reason Reason
	}{
		{"target not in signed metadata", func(r *testRepo) {
			r.publish()
			r.setFile("targets/app.conf/2.0.0/"+strings.Repeat("ab", 32)+".any", evil)
		}, ReasonUnsigned},
		{"targets signed with a wrong key", func(r *testRepo) {
			_, attacker, _ := ed25519.GenerateKey(nil)
			r.addTarget("app.conf", "2.0.0", TypeFile, PlatformAny, evil)
			r.signTargets(attacker)
			r.signSnapshot(r.targets.Signed.Version)
			r.signTimestamp(r.snapshot.Signed.Version)
		}, ReasonBadSignature},
		{"timestamp signed with a wrong key", func(r *testRepo) {
			_, attacker, _ := ed25519.GenerateKey(nil)
			r.addTarget("app.conf", "2.0.0", TypeFile, PlatformAny, evil)
			r.publish()
			r.setFile("metadata/timestamp.json", signMeta(t, r.timestamp, attacker))
		}, ReasonBadSignature},
		{"unsigned timestamp", func(r *testRepo) {
			r.addTarget("app.conf", "2.0.0", TypeFile, PlatformAny, evil)
			r.publish()
			r.setFile("metadata/timestamp.json", signMeta(t, r.timestamp))
		}, ReasonBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := newTestRepo(t)
			tt.attack(repo)
			c := newTestClient(t, repo, "", nil)
			dest, old := installed(t)
			_, err := update(context.Background(), c, "app.conf", "2.0.0", "linux-arm64", dest)
			assertReason(t, err, tt.reason)
			assertUntouched(t, dest, old)
		})
	}
}

func TestTamperedBytes(t *testing.T) {
	repo := newTestRepo(t)
	data := randomBytes(t, 100<<10)
	sha := repo.addTarget("app.conf", "2.0.0", TypeFile, PlatformAny, data)
	repo.publish()
	tampered := bytes.Clone(data)
	tampered[len(tampered)/2] ^= 0xff
	repo.setFile("targets/app.conf/2.0.0/"+sha+".any", tampered)
	c := newTestClient(t, repo, "", nil)
	dest, old := installed(t)
	_, err := update(context.Background(), c, "app.conf", "2.0.0", "linux-arm64", dest)
	assertReason(t, err, ReasonTampered)
	if !strings.Contains(err.Error(), "tampered") {
		t.Errorf("error %q does not say tampered", err)
	}
	assertUntouched(t, dest, old)
	entries, _ := os.ReadDir(c.dlDir)
	if len(entries) != 0 {
		t.Errorf("download directory keeps %v", entries)
	}
}

func TestMetadataRollback(t *testing.T) {
	tests := []struct {
		name   string
		attack func(r *testRepo, v1 map[string][]byte)
	}{
		{"old timestamp served again", func(r *testRepo, v1 map[string][]byte) { r.restoreFiles(v1) }},
		{"new timestamp naming an old snapshot", func(r *testRepo, _ map[string][]byte) { r.signTimestamp(1) }},
		{"new snapshot naming an old targets", func(r *testRepo, _ map[string][]byte) {
			r.signSnapshot(1)
			r.signTimestamp(r.snapshot.Signed.Version)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := newTestRepo(t)
			repo.addTarget("app.conf", "1.0.0", TypeFile, PlatformAny, []byte("v1"))
			repo.publish()
			v1 := repo.saveFiles()
			c := newTestClient(t, repo, "", nil)
			ctx := context.Background()
			if err := c.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			repo.addTarget("app.conf", "1.1.0", TypeFile, PlatformAny, []byte("v1.1"))
			repo.publish()
			if err := c.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			tt.attack(repo, v1)
			dest, old := installed(t)
			_, err := update(ctx, c, "app.conf", "1.0.0", "linux-arm64", dest)
			assertReason(t, err, ReasonRollback)
			assertUntouched(t, dest, old)
			// The failed refresh leaves no metadata to look up in.
			_, err = c.Lookup("app.conf", "1.1.0", "linux-arm64")
			assertReason(t, err, ReasonIO)
		})
	}
}

func TestArtifactRollback(t *testing.T) {
	repo := newTestRepo(t)
	for _, v := range []string{"1.1.0", "1.2.0", "1.10.0"} {
		repo.addTarget("app.conf", v, TypeFile, PlatformAny, []byte("app "+v))
	}
	repo.publish()
	c := newTestClient(t, repo, "", nil)
	dest, old := installed(t)
	ctx := context.Background()
	if _, err := update(ctx, c, "app.conf", "1.2.0", "linux-arm64", dest); err != nil {
		t.Fatal(err)
	}
	old = []byte("app 1.2.0")
	assertUntouched(t, dest, old)
	for _, v := range []string{"1.1.0", "1.2.0"} {
		_, err := update(ctx, c, "app.conf", v, "linux-arm64", dest)
		assertReason(t, err, ReasonRollback)
		assertUntouched(t, dest, old)
	}
	if _, err := c.Lookup("app.conf", "1.1.0", "linux-arm64", AllowDowngrade()); err != nil {
		t.Fatalf("downgrade allowed: %v", err)
	}
	if _, err := c.Lookup("app.conf", "1.10.0", "linux-arm64"); err != nil {
		t.Fatalf("1.10.0 is newer than 1.2.0: %v", err)
	}
	_, err := c.Lookup("app.conf", "1.10.0", "linux-arm64", Installed("2.0.0"))
	assertReason(t, err, ReasonRollback)
}

func TestFreeze(t *testing.T) {
	tests := []struct {
		name string
		prep func(r *testRepo) func() time.Time
	}{
		{"timestamp expired", func(r *testRepo) func() time.Time {
			r.timestamp.Signed.Expires = time.Now().Add(-time.Minute).UTC()
			r.publish()
			return nil
		}},
		{"clock past the timestamp's expiry", func(r *testRepo) func() time.Time {
			r.publish()
			return func() time.Time { return time.Now().Add(48 * time.Hour) }
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := newTestRepo(t)
			repo.addTarget("app.conf", "2.0.0", TypeFile, PlatformAny, []byte("v2"))
			now := tt.prep(repo)
			c := newTestClient(t, repo, "", func(cfg *Config) { cfg.Now = now })
			dest, old := installed(t)
			_, err := update(context.Background(), c, "app.conf", "2.0.0", "linux-arm64", dest)
			assertReason(t, err, ReasonExpired)
			assertUntouched(t, dest, old)
		})
	}
}

func TestMixAndMatch(t *testing.T) {
	tests := []struct {
		name   string
		attack func(r *testRepo)
	}{
		{"targets version differs from the snapshot's", func(r *testRepo) {
			r.setFile("metadata/2.targets.json", r.file("metadata/1.targets.json"))
		}},
		{"snapshot version differs from the timestamp's", func(r *testRepo) {
			r.setFile("metadata/2.snapshot.json", r.file("metadata/1.snapshot.json"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := newTestRepo(t)
			repo.addTarget("app.conf", "1.0.0", TypeFile, PlatformAny, []byte("v1"))
			repo.publish()
			repo.addTarget("app.conf", "2.0.0", TypeFile, PlatformAny, []byte("v2"))
			repo.publish()
			tt.attack(repo)
			c := newTestClient(t, repo, "", nil)
			dest, old := installed(t)
			_, err := update(context.Background(), c, "app.conf", "2.0.0", "linux-arm64", dest)
			assertReason(t, err, ReasonMixAndMatch)
			assertUntouched(t, dest, old)
		})
	}
}

func TestEndlessData(t *testing.T) {
	data := randomBytes(t, 64<<10)
	tests := []struct {
		name    string
		handler func(w http.ResponseWriter, r *http.Request, data []byte)
		fetched int64
	}{
		{"stream without length", func(w http.ResponseWriter, _ *http.Request, data []byte) {
			w.Header().Set("Content-Type", "application/octet-stream")
			if _, err := w.Write(data); err != nil {
				return
			}
			junk := bytes.Repeat([]byte{'A'}, 32<<10)
			for range 1000 {
				if _, err := w.Write(junk); err != nil {
					return
				}
			}
		}, int64(len(data))},
		{"announced length too large", func(w http.ResponseWriter, _ *http.Request, data []byte) {
			w.Header().Set("Content-Length", strconv.Itoa(10*len(data)))
			_, _ = w.Write(data)
		}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := newTestRepo(t)
			repo.addTarget("app.conf", "2.0.0", TypeFile, PlatformAny, data)
			repo.publish()
			repo.setTargetHandler(tt.handler)
			c := newTestClient(t, repo, "", nil)
			dest, old := installed(t)
			st, err := update(context.Background(), c, "app.conf", "2.0.0", "linux-arm64", dest)
			assertReason(t, err, ReasonTooLarge)
			assertUntouched(t, dest, old)
			if st.BytesFetched != tt.fetched {
				t.Errorf("fetched %d bytes, want %d", st.BytesFetched, tt.fetched)
			}
			entries, _ := os.ReadDir(c.dlDir)
			for _, e := range entries {
				if fi, _ := e.Info(); fi.Size() > int64(len(data)) {
					t.Errorf("%s has %d bytes, more than the signed %d", e.Name(), fi.Size(), len(data))
				}
			}
		})
	}
}

// trickle sends a few bytes and then nothing until the client gives up.
func trickle(w http.ResponseWriter, r *http.Request, data []byte) {
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	_, _ = w.Write(data[:10])
	_ = http.NewResponseController(w).Flush()
	<-r.Context().Done()
}

func TestSlowRetrieval(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"below minimum throughput", func(c *Config) {
			c.ThroughputWindow = 20 * time.Millisecond
			c.MinThroughput = 1 << 20
		}},
		{"longer than the maximum download time", func(c *Config) {
			c.ThroughputWindow = time.Hour
			c.MaxDownloadTime = 50 * time.Millisecond
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := newTestRepo(t)
			repo.addTarget("app.conf", "2.0.0", TypeFile, PlatformAny, randomBytes(t, 64<<10))
			repo.publish()
			repo.setTargetHandler(trickle)
			c := newTestClient(t, repo, "", tt.mod)
			dest, old := installed(t)
			// A bound that only matters if the limits under test do not work.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := update(ctx, c, "app.conf", "2.0.0", "linux-arm64", dest)
			assertReason(t, err, ReasonTooSlow)
			assertUntouched(t, dest, old)
		})
	}
}

func TestInterruptedDownloadResumes(t *testing.T) {
	repo := newTestRepo(t)
	data := randomBytes(t, 1<<20+123)
	repo.addTarget("agent", "2.0.0", TypeAgent, "linux-arm64", data)
	repo.publish()
	cut := len(data) * 6 / 10
	var calls atomic.Int32
	repo.setTargetHandler(func(w http.ResponseWriter, r *http.Request, data []byte) {
		if calls.Add(1) == 1 {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			_, _ = w.Write(data[:cut])
			_ = http.NewResponseController(w).Flush()
			panic(http.ErrAbortHandler) // cut the connection
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	})
	c := newTestClient(t, repo, "", nil)
	ctx := context.Background()
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	tg, err := c.Lookup("agent", "2.0.0", "linux-arm64")
	if err != nil {
		t.Fatal(err)
	}
	_, st1, err := c.Download(ctx, tg, nil)
	assertReason(t, err, ReasonIO)
	if st1.BytesFetched != int64(cut) {
		t.Fatalf("first attempt fetched %d bytes, want %d", st1.BytesFetched, cut)
	}
	path, st2, err := c.Download(ctx, tg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
		t.Fatal("downloaded file differs")
	}
	if st2.Resumes != 1 || st2.BytesRefetched != 0 || st2.BytesFetched != int64(len(data)-cut) {
		t.Fatalf("second attempt stats %+v", st2)
	}
	total := st1.BytesFetched + st2.BytesFetched
	if refetched := total - int64(len(data)); refetched*10 >= int64(len(data)) {
		t.Fatalf("re-fetched %d of %d bytes", refetched, len(data))
	}
	if got, want := repo.rangeLog(), []string{"", fmt.Sprintf("bytes=%d-", cut)}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("server saw Range headers %q, want %q", got, want)
	}
}

// leaveCheckpoint writes the first n bytes of data as the .part a killed
// process would have left.
func leaveCheckpoint(t *testing.T, dataDir, sha string, data []byte) {
	t.Helper()
	dir := filepath.Join(dataDir, "ota", "downloads")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, sha+".part"), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCheckpointFromPreviousProcess(t *testing.T) {
	repo := newTestRepo(t)
	data := randomBytes(t, 500<<10)
	sha := repo.addTarget("agent", "2.0.0", TypeAgent, "linux-arm64", data)
	repo.publish()
	dataDir := t.TempDir()
	half := len(data) / 2
	leaveCheckpoint(t, dataDir, sha, data[:half])
	c := newTestClient(t, repo, dataDir, nil)
	ctx := context.Background()
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	tg, err := c.Lookup("agent", "2.0.0", "linux-arm64")
	if err != nil {
		t.Fatal(err)
	}
	path, st, err := c.Download(ctx, tg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
		t.Fatal("downloaded file differs")
	}
	if st.Resumes != 1 || st.BytesFetched != int64(len(data)-half) || st.BytesRefetched != 0 {
		t.Fatalf("stats %+v", st)
	}
	if got := repo.rangeLog(); len(got) != 1 || got[0] != fmt.Sprintf("bytes=%d-", half) {
		t.Fatalf("Range headers %q", got)
	}
	if _, err := os.Stat(path + ".part"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf(".part left behind: %v", err)
	}
}

func TestServerIgnoresRange(t *testing.T) {
	repo := newTestRepo(t)
	data := randomBytes(t, 200<<10)
	sha := repo.addTarget("agent", "2.0.0", TypeAgent, "linux-arm64", data)
	repo.publish()
	repo.setTargetHandler(func(w http.ResponseWriter, _ *http.Request, data []byte) {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		_, _ = w.Write(data) // 200, whatever the Range
	})
	dataDir := t.TempDir()
	prefix := len(data) * 4 / 10
	leaveCheckpoint(t, dataDir, sha, data[:prefix])
	c := newTestClient(t, repo, dataDir, nil)
	ctx := context.Background()
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	tg, err := c.Lookup("agent", "2.0.0", "linux-arm64")
	if err != nil {
		t.Fatal(err)
	}
	path, st, err := c.Download(ctx, tg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
		t.Fatal("downloaded file differs")
	}
	if st.BytesFetched != int64(len(data)) || st.BytesRefetched != int64(prefix) || st.Resumes != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCorruptCheckpointRefetched(t *testing.T) {
	repo := newTestRepo(t)
	data := randomBytes(t, 100<<10)
	sha := repo.addTarget("agent", "2.0.0", TypeAgent, "linux-arm64", data)
	repo.publish()
	dataDir := t.TempDir()
	// A power loss left zeros where the checkpoint's tail should be.
	bad := bytes.Clone(data[:len(data)/2])
	clear(bad[len(bad)-4096:])
	leaveCheckpoint(t, dataDir, sha, bad)
	c := newTestClient(t, repo, dataDir, nil)
	ctx := context.Background()
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	tg, err := c.Lookup("agent", "2.0.0", "linux-arm64")
	if err != nil {
		t.Fatal(err)
	}
	path, st, err := c.Download(ctx, tg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
		t.Fatal("downloaded file differs")
	}
	if st.BytesRefetched != int64(len(bad)) || st.Resumes != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestConfigValidate(t *testing.T) {
	err := Config{HubURL: "ftp://x", MinThroughput: -1}.Validate()
	for _, want := range []string{"HubURL", "DeviceID", "DataDir", "MinThroughput"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want a problem with %s", err, want)
		}
	}
	_, err = New(Config{HubURL: "http://hub", DeviceID: "d", DataDir: t.TempDir()})
	assertReason(t, err, ReasonInvalid) // no trusted root
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"1.0.0", "1.0.0", 0},
		{"v1.0.0", "1.0", 0},
		{"1.0.1", "1.0.0", 1},
		{"1.10.0", "1.9.9", 1},
		{"1.0.0-rc.1", "1.0.0", -1},
		{"1.0.0-rc.2", "1.0.0-rc.10", -1},
		{"1.0.0-alpha", "1.0.0-alpha.1", -1},
		{"1.0.0-1", "1.0.0-alpha", -1},
		{"1.0.0+build.5", "1.0.0+build.4", 0},
		{"2", "10", -1},
	}
	for _, tt := range tests {
		t.Run(tt.a+"_vs_"+tt.b, func(t *testing.T) {
			if got := CompareVersions(tt.a, tt.b); got != tt.want {
				t.Errorf("CompareVersions(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
			}
			if got := CompareVersions(tt.b, tt.a); got != -tt.want {
				t.Errorf("CompareVersions(%q, %q) = %d, want %d", tt.b, tt.a, got, -tt.want)
			}
		})
	}
}

// The error classification must not depend on go-tuf's message texts.
func TestClassifyTUF(t *testing.T) {
	tests := []struct {
		err  error
		want Reason
	}{
		{&metadata.ErrExpiredMetadata{}, ReasonExpired},
		{&metadata.ErrUnsignedMetadata{}, ReasonBadSignature},
		{&metadata.ErrLengthOrHashMismatch{}, ReasonTampered},
		{&metadata.ErrDownloadLengthMismatch{}, ReasonTooLarge},
		{&metadata.ErrDownloadHTTP{StatusCode: 404}, ReasonNotFound},
		{&metadata.ErrDownloadHTTP{StatusCode: 500}, ReasonIO},
		{fmt.Errorf("x: %w", &metadata.ErrBadVersionNumber{}), ReasonMixAndMatch},
		{context.Canceled, ReasonCanceled},
	}
	for _, tt := range tests {
		if got := classifyTUF(tt.err, ReasonMixAndMatch); got != tt.want {
			t.Errorf("classifyTUF(%T) = %s, want %s", tt.err, got, tt.want)
		}
	}
}

// A 32-bit ARM agent takes the artifact of its own variant first, then
// one published for plain linux/arm; an ARMv6 board never gets an ARMv7
// build.
func TestLookupARMVariants(t *testing.T) {
	repo := newTestRepo(t)
	v7 := repo.addTarget("outpost-agent", "2.0.0", TypeAgent, "linux-armv7", randomBytes(t, 1<<10))
	arm := repo.addTarget("outpost-agent", "2.0.0", TypeAgent, "linux-arm", randomBytes(t, 1<<10))
	repo.addTarget("tool", "1.0.0", TypeFile, "linux-armv7", randomBytes(t, 1<<10))
	repo.publish()
	c := newTestClient(t, repo, "", nil)
	if err := c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, platform, want string }{
		{"outpost-agent", "linux-armv7", v7},
		{"outpost-agent", "linux-armv6", arm},
		{"outpost-agent", "linux-arm", arm},
	} {
		tg, err := c.Lookup(tt.name, "2.0.0", tt.platform)
		if err != nil {
			t.Errorf("%s: %v", tt.platform, err)
			continue
		}
		if tg.SHA256 != tt.want {
			t.Errorf("%s got the artifact for %s", tt.platform, tg.Meta.Platform)
		}
	}
	_, err := c.Lookup("tool", "1.0.0", "linux-armv6")
	assertReason(t, err, ReasonUnsigned)
	if _, err := c.Lookup("outpost-agent", "2.0.0", "linux-arm64"); err == nil {
		t.Error("an arm64 agent got a 32-bit ARM build")
	}
}
