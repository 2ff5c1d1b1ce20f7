//go:build coap

package ota

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/coaptick"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	coapnet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
)

// coapRepo serves a testRepo's files over CoAP as the hub does
// (internal/hub/coapsrv): stateless Block2 in blocks of up to 1024 bytes,
// device id and password in the URI-Query options d= and p=.
type coapRepo struct {
	r    *testRepo
	addr string

	mu sync.Mutex // guards the fields below
	// stallFrom, when ≥ 0, makes the server ignore requests for target
	// blocks from this number on.
	stallFrom int64
	// tamper, if set, changes a target block before it is sent.
	tamper func(num int64, payload []byte) []byte
	// extraBlock makes the server claim more blocks after a target's end.
	extraBlock bool
	// requested logs the block numbers of target requests.
	requested []int64
}

func newCoAPRepo(t *testing.T, r *testRepo) *coapRepo {
	t.Helper()
	cr := &coapRepo{r: r, stallFrom: -1}
	ln, err := coapnet.NewListenUDP("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cr.addr = ln.LocalAddr().String()
	router := mux.NewRouter()
	router.DefaultHandleFunc(cr.serve)
	tick := coaptick.New()
	srv := udp.NewServer(options.WithMux(router), options.WithBlockwise(false, blockwise.SZX1024, time.Minute),
		options.WithPeriodicRunner(tick.Run), options.WithErrors(func(error) {}))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Stop()
		<-done
		tick.Stop()
	})
	return cr
}

func (cr *coapRepo) url() string { return "coap://" + cr.addr }

func (cr *coapRepo) set(f func(cr *coapRepo)) {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	f(cr)
}

func (cr *coapRepo) requestedBlocks() []int64 {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	return append([]int64(nil), cr.requested...)
}

func (cr *coapRepo) serve(w mux.ResponseWriter, req *mux.Message) {
	var id, pw string
	for _, q := range mustQueries(req) {
		if v, ok := strings.CutPrefix(q, "d="); ok {
			id = v
		} else if v, ok := strings.CutPrefix(q, "p="); ok {
			pw = v
		}
	}
	if id != testDevice || pw != testPassword {
		_ = w.SetResponse(codes.Unauthorized, message.TextPlain, nil)
		return
	}
	p, _ := req.Options().Path()
	rel, ok := strings.CutPrefix(p, "/tuf/")
	if !ok {
		rel, ok = strings.CutPrefix(p, "tuf/")
	}
	data := cr.r.file(rel)
	if !ok || data == nil {
		_ = w.SetResponse(codes.NotFound, message.TextPlain, nil)
		return
	}
	szx, num := blockwise.SZX1024, int64(0)
	if v, err := req.Options().GetUint32(message.Block2); err == nil {
		szx, num, _, _ = blockwise.DecodeBlockOption(v)
	}
	isTarget := strings.HasPrefix(rel, "targets/")
	cr.mu.Lock()
	stall, tamper, extra := cr.stallFrom >= 0 && num >= cr.stallFrom, cr.tamper, cr.extraBlock
	if isTarget {
		cr.requested = append(cr.requested, num)
	}
	cr.mu.Unlock()
	if isTarget && stall {
		return // no answer: the link is down
	}
	off := num * szx.Size()
	if off > int64(len(data)) || (off == int64(len(data)) && off > 0) {
		_ = w.SetResponse(codes.BadOption, message.TextPlain, nil)
		return
	}
	payload := append([]byte(nil), data[off:min(off+szx.Size(), int64(len(data)))]...)
	more := off+int64(len(payload)) < int64(len(data))
	if isTarget && tamper != nil {
		payload = tamper(num, payload)
	}
	if isTarget && extra && !more {
		more, payload = true, append(payload, make([]byte, int(szx.Size())-len(payload))...)
	}
	v, _ := blockwise.EncodeBlockOption(szx, num, more)
	b := make([]byte, 4)
	n, _ := message.EncodeUint32(b, v)
	_ = w.SetResponse(codes.Content, message.AppOctets, bytes.NewReader(payload),
		message.Option{ID: message.Block2, Value: b[:n]})
}

func mustQueries(req *mux.Message) []string {
	q, err := req.Options().Queries()
	if err != nil {
		return nil
	}
	return q
}

// newCoAPClient is newTestClient talking to cr over CoAP only: HubURL
// points nowhere, so any HTTP request fails.
func newCoAPClient(t *testing.T, cr *coapRepo, dataDir string, mod func(*Config)) *Client {
	t.Helper()
	return newTestClient(t, cr.r, dataDir, func(c *Config) {
		c.HubURL = "http://127.0.0.1:1"
		c.CoAPURL = cr.url()
		if mod != nil {
			mod(c)
		}
	})
}

func TestCoAPUpdate(t *testing.T) {
	repo := newTestRepo(t)
	data := randomBytes(t, 300<<10+17)
	repo.addTarget("app.conf", "1.1.0", TypeFile, PlatformAny, data)
	repo.publish()
	cr := newCoAPRepo(t, repo)
	c := newCoAPClient(t, cr, "", nil)
	dest := filepath.Join(t.TempDir(), "app.conf")
	ctx := context.Background()
	st, err := update(ctx, c, "app.conf", "1.1.0", "linux-arm64", dest)
	if err != nil {
		t.Fatalf("update over CoAP: %v", err)
	}
	got, err := os.ReadFile(dest)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("installed file differs from the artifact (%v)", err)
	}
	if st.BytesFetched != int64(len(data)) || st.BytesRefetched != 0 || st.Resumes != 0 {
		t.Errorf("stats %+v, want %d bytes fetched once", st, len(data))
	}
	if n := len(cr.requestedBlocks()); n != 301 {
		t.Errorf("%d target block requests, want 301", n)
	}
	if len(repo.file("metadata/1.root.json")) <= 1024 {
		t.Log("root.json fits one block; metadata was not fetched block-wise")
	}

	t.Run("wrong password", func(t *testing.T) {
		c := newCoAPClient(t, cr, "", func(c *Config) { c.Password = "wrong" })
		assertReason(t, c.Refresh(ctx), ReasonUnauthorized)
	})
	t.Run("unknown target", func(t *testing.T) {
		tg, err := c.Lookup("app.conf", "1.1.0", "linux-arm64", AllowDowngrade())
		if err != nil {
			t.Fatal(err)
		}
		missing := *tg
		missing.SHA256 = strings.Repeat("0", 64)
		_, _, err = c.Download(ctx, &missing, nil)
		assertReason(t, err, ReasonNotFound)
	})
}

func TestCoAPInterruptedDownloadResumes(t *testing.T) {
	repo := newTestRepo(t)
	data := randomBytes(t, 300<<10)
	sha := repo.addTarget("app.conf", "1.1.0", TypeFile, PlatformAny, data)
	repo.publish()
	cr := newCoAPRepo(t, repo)
	const stallAt = 180 // 60 % of the 300 blocks
	cr.set(func(cr *coapRepo) { cr.stallFrom = stallAt })
	dataDir := t.TempDir()
	c := newCoAPClient(t, cr, dataDir, func(c *Config) {
		c.MinThroughput, c.ThroughputWindow = 100, 500*time.Millisecond
	})
	ctx := context.Background()
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	tg, err := c.Lookup("app.conf", "1.1.0", "linux-arm64")
	if err != nil {
		t.Fatal(err)
	}
	_, st1, err := c.Download(ctx, tg, nil)
	assertReason(t, err, ReasonTooSlow)
	if st1.BytesFetched != stallAt*1024 {
		t.Fatalf("interrupted download fetched %d bytes, want %d", st1.BytesFetched, stallAt*1024)
	}
	part := filepath.Join(dataDir, "ota", "downloads", sha+".part")
	if fi, err := os.Stat(part); err != nil || fi.Size() != stallAt*1024 {
		t.Fatalf("checkpoint after the interruption: %v, %v", fi, err)
	}
	// A power cut can leave a partial block: it must be fetched again,
	// the checkpoint truncated to the block boundary.
	f, err := os.OpenFile(part, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("partial block garbage")); err != nil {
		t.Fatal(err)
	}
	f.Close()

	cr.set(func(cr *coapRepo) { cr.stallFrom, cr.requested = -1, nil })
	path, st2, err := c.Download(ctx, tg, nil)
	if err != nil {
		t.Fatalf("resumed download: %v", err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
		t.Fatal("resumed download differs from the artifact")
	}
	if req := cr.requestedBlocks(); len(req) == 0 || req[0] != stallAt {
		t.Errorf("resumed download started at block %v, want %d", req[:min(len(req), 1)], stallAt)
	}
	total := int64(len(data))
	if st2.Resumes != 1 || st2.BytesFetched != total-stallAt*1024 {
		t.Errorf("resume stats %+v, want 1 resume and %d bytes", st2, total-stallAt*1024)
	}
	if st2.BytesRefetched != int64(len("partial block garbage")) {
		t.Errorf("re-fetched %d bytes, want the %d of the partial block", st2.BytesRefetched, len("partial block garbage"))
	}
	if refetched := st1.BytesFetched + st2.BytesFetched - total; refetched*10 >= total || st2.BytesRefetched*10 >= total {
		t.Errorf("re-fetched %d bytes (counted %d) of %d: want < 10 %%", refetched, st2.BytesRefetched, total)
	}
}

func TestCoAPTamperedBlock(t *testing.T) {
	repo := newTestRepo(t)
	data := randomBytes(t, 64<<10)
	sha := repo.addTarget("app.conf", "1.1.0", TypeFile, PlatformAny, data)
	repo.publish()
	cr := newCoAPRepo(t, repo)
	cr.set(func(cr *coapRepo) {
		cr.tamper = func(num int64, p []byte) []byte {
			if num == 17 {
				p[100] ^= 0x80
			}
			return p
		}
	})
	dataDir := t.TempDir()
	c := newCoAPClient(t, cr, dataDir, nil)
	ctx := context.Background()
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	tg, err := c.Lookup("app.conf", "1.1.0", "linux-arm64")
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.Download(ctx, tg, nil)
	assertReason(t, err, ReasonTampered)
	for _, name := range []string{sha, sha + ".part"} {
		if _, err := os.Stat(filepath.Join(dataDir, "ota", "downloads", name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after a tampered download: %v", name, err)
		}
	}
}

func TestCoAPEndlessData(t *testing.T) {
	// 10 KiB + 5: the last block grows past the signed length; 10 KiB: the
	// last block is full and claims more blocks follow.
	for _, size := range []int{10<<10 + 5, 10 << 10} {
		t.Run(fmt.Sprint(size), func(t *testing.T) { testCoAPEndlessData(t, size) })
	}
}

func testCoAPEndlessData(t *testing.T, size int) {
	repo := newTestRepo(t)
	data := randomBytes(t, size)
	sha := repo.addTarget("app.conf", "1.1.0", TypeFile, PlatformAny, data)
	repo.publish()
	cr := newCoAPRepo(t, repo)
	cr.set(func(cr *coapRepo) { cr.extraBlock = true })
	dataDir := t.TempDir()
	c := newCoAPClient(t, cr, dataDir, nil)
	ctx := context.Background()
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	tg, err := c.Lookup("app.conf", "1.1.0", "linux-arm64")
	if err != nil {
		t.Fatal(err)
	}
	_, st, err := c.Download(ctx, tg, nil)
	assertReason(t, err, ReasonTooLarge)
	if st.BytesFetched > int64(len(data)) {
		t.Errorf("wrote %d bytes, more than the signed length %d", st.BytesFetched, len(data))
	}
	if _, err := os.Stat(filepath.Join(dataDir, "ota", "downloads", sha+".part")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("checkpoint left after endless data: %v", err)
	}
}

func TestCoAPURLValidate(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"coap://hub:5683", true},
		{"coap://10.0.0.1:5683/", true},
		{"coap://[::1]:5683", true},
		{"coaps://hub:5684", false},
		{"http://hub:5683", false},
		{"coap://hub", false},
		{"coap://hub:0", false},
		{"coap://hub:5683/tuf", false},
		{"coap://dev:pw@hub:5683", false},
	} {
		if err := ValidateCoAPURL(tc.url); (err == nil) != tc.ok {
			t.Errorf("ValidateCoAPURL(%q) = %v, want ok %v", tc.url, err, tc.ok)
		}
	}
	err := Config{HubURL: "http://hub", CoAPURL: "coaps://hub:5684", DeviceID: "d", DataDir: "x"}.Validate()
	if err == nil || !strings.Contains(err.Error(), "CoAPURL") {
		t.Errorf("Validate() = %v, want a problem with CoAPURL", err)
	}
}
