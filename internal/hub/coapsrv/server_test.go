package coapsrv

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/coaptick"
	"github.com/outpost-edge/outpost/internal/hub/ota"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	"github.com/plgd-dev/go-coap/v3/udp/client"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	testDevice   = "dev-1"
	testPassword = "s3cret"
)

// devices accepts only testDevice with testPassword.
type devices struct{}

func (devices) Authenticate(_ context.Context, id, password string) bool {
	return id == testDevice && password == testPassword
}

// initService returns an ota.Service with keys and a root, as after
// `outpost keys init`.
func initService(t *testing.T) *ota.Service {
	t.Helper()
	s, err := ota.New(ota.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	online, err := s.OnlineKeys("")
	if err != nil {
		t.Fatal(err)
	}
	rootPriv, err := ota.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	rootPub, _, err := ota.PublicKey(rootPriv)
	if err != nil {
		t.Fatal(err)
	}
	r := metadata.Root(time.Now().Add(30 * 24 * time.Hour))
	if err := r.Signed.AddKey(rootPub, metadata.ROOT); err != nil {
		t.Fatal(err)
	}
	for _, k := range online {
		if err := r.Signed.AddKey(k.Key, k.Role); err != nil {
			t.Fatal(err)
		}
	}
	signer, err := ota.Signer(rootPriv)
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

// startServer runs a Server for svc on 127.0.0.1 until the test ends.
func startServer(t *testing.T, svc *ota.Service) string {
	t.Helper()
	s, err := Listen(Options{Addr: "127.0.0.1:0", Files: svc, Devices: devices{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s.Addr().String()
}

// dial returns a client without go-coap's block-wise layer, so tests see
// every block as the server sends it.
func dial(t *testing.T, addr string, blockwiseOn bool) *client.Conn {
	t.Helper()
	tick := coaptick.New()
	co, err := udp.Dial(addr, options.WithBlockwise(blockwiseOn, blockwise.SZX1024, 10*time.Second), options.WithPeriodicRunner(tick.Run))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		co.Close()
		<-co.Done()
		tick.Stop()
	})
	return co
}

func auth(id, pw string) []message.Option {
	return []message.Option{
		{ID: message.URIQuery, Value: []byte("d=" + id)},
		{ID: message.URIQuery, Value: []byte("p=" + pw)},
	}
}

type block struct {
	code    codes.Code
	num     int64
	szx     blockwise.SZX
	more    bool
	size2   uint32
	payload []byte
}

// get asks for block num of p (no Block2 option when num < 0).
func get(t *testing.T, co *client.Conn, p string, num int64, szx blockwise.SZX, opts ...message.Option) block {
	t.Helper()
	if num >= 0 {
		v, err := blockwise.EncodeBlockOption(szx, num, false)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 4)
		n, _ := message.EncodeUint32(b, v)
		opts = append(opts, message.Option{ID: message.Block2, Value: b[:n]})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := co.Get(ctx, p, opts...)
	if err != nil {
		t.Fatalf("GET %s block %d: %v", p, num, err)
	}
	b := block{code: resp.Code()}
	if v, err := resp.Options().GetUint32(message.Block2); err == nil {
		if b.szx, b.num, b.more, err = blockwise.DecodeBlockOption(v); err != nil {
			t.Fatal(err)
		}
	}
	b.size2, _ = resp.Options().GetUint32(message.Size2)
	if resp.Body() != nil {
		if b.payload, err = io.ReadAll(resp.Body()); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// fetchAll reads p block by block from block 0.
func fetchAll(t *testing.T, co *client.Conn, p string) ([]byte, int) {
	t.Helper()
	var out []byte
	for num := int64(0); ; num++ {
		b := get(t, co, p, num, blockwise.SZX1024, auth(testDevice, testPassword)...)
		if b.code != codes.Content {
			t.Fatalf("GET %s block %d: %v", p, num, b.code)
		}
		if b.num != num || b.szx != blockwise.SZX1024 {
			t.Fatalf("GET %s block %d: answered block %d size %d", p, num, b.num, b.szx.Size())
		}
		if b.more && len(b.payload) != 1024 {
			t.Fatalf("block %d of %s: %d bytes with more blocks following", num, p, len(b.payload))
		}
		if int64(b.size2) != int64(len(out))+int64(len(b.payload)) && !b.more {
			t.Fatalf("Size2 %d, got %d bytes", b.size2, len(out)+len(b.payload))
		}
		out = append(out, b.payload...)
		if !b.more {
			return out, int(num) + 1
		}
	}
}

func publish(t *testing.T, svc *ota.Service, size int) (ota.Artifact, []byte) {
	t.Helper()
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	art, _, err := svc.Publish(ota.Spec{Name: "app", Version: "1.0.0", Type: ota.TypeFile, Platform: "linux-arm64"}, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return art, data
}

func targetURIPath(art ota.Artifact) string {
	dir, base := path.Split(art.Path)
	return "/tuf/targets/" + dir + art.SHA256 + "." + base
}

func TestServesMetadataAndTargetsBlockwise(t *testing.T) {
	svc := initService(t)
	art, data := publish(t, svc, 300<<10)
	co := dial(t, startServer(t, svc), false)

	for _, name := range []string{"1.root.json", "timestamp.json"} {
		t.Run(name, func(t *testing.T) {
			f, err := svc.OpenMetadata(name)
			if err != nil {
				t.Fatal(err)
			}
			want, err := io.ReadAll(f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			got, _ := fetchAll(t, co, "/tuf/metadata/"+name)
			if !bytes.Equal(got, want) {
				t.Errorf("%s over CoAP: %d bytes, differ from the %d stored", name, len(got), len(want))
			}
		})
	}

	t.Run("300 KiB target", func(t *testing.T) {
		got, blocks := fetchAll(t, co, targetURIPath(art))
		if !bytes.Equal(got, data) {
			t.Fatalf("target over CoAP: %d bytes, differ from the %d stored", len(got), len(data))
		}
		if blocks != 300 {
			t.Errorf("%d blocks, want 300", blocks)
		}
	})

	t.Run("any block, any size", func(t *testing.T) {
		// A device resumes by asking for the block after its checkpoint.
		b := get(t, co, targetURIPath(art), 123, blockwise.SZX1024, auth(testDevice, testPassword)...)
		if b.code != codes.Content || b.num != 123 || !b.more || b.size2 != 300<<10 || !bytes.Equal(b.payload, data[123*1024:124*1024]) {
			t.Errorf("block 123: code %v num %d more %v size2 %d, payload equal %v", b.code, b.num, b.more, b.size2, bytes.Equal(b.payload, data[123*1024:124*1024]))
		}
		b = get(t, co, targetURIPath(art), 299, blockwise.SZX1024, auth(testDevice, testPassword)...)
		if b.code != codes.Content || b.more || !bytes.Equal(b.payload, data[299*1024:]) {
			t.Errorf("last block: code %v more %v, payload equal %v", b.code, b.more, bytes.Equal(b.payload, data[299*1024:]))
		}
		b = get(t, co, targetURIPath(art), 300, blockwise.SZX1024, auth(testDevice, testPassword)...)
		if b.code != codes.BadOption {
			t.Errorf("block past the end: %v, want 4.02", b.code)
		}
		b = get(t, co, targetURIPath(art), 7, blockwise.SZX256, auth(testDevice, testPassword)...)
		if b.code != codes.Content || b.num != 7 || b.szx != blockwise.SZX256 || !bytes.Equal(b.payload, data[7*256:8*256]) {
			t.Errorf("256-byte block 7: code %v num %d szx %v", b.code, b.num, b.szx)
		}
		b = get(t, co, targetURIPath(art), -1, 0, auth(testDevice, testPassword)...)
		if b.code != codes.Content || b.num != 0 || !b.more || b.szx != blockwise.SZX1024 || !bytes.Equal(b.payload, data[:1024]) {
			t.Errorf("no Block2 option: code %v num %d more %v szx %v", b.code, b.num, b.more, b.szx)
		}
	})

	t.Run("go-coap block-wise client", func(t *testing.T) {
		// Interoperability: a stock RFC 7959 client follows the blocks.
		bw := dial(t, co.RemoteAddr().String(), true)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		resp, err := bw.Get(ctx, targetURIPath(art), auth(testDevice, testPassword)...)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body())
		if err != nil {
			t.Fatal(err)
		}
		if resp.Code() != codes.Content || !bytes.Equal(got, data) {
			t.Errorf("code %v, %d bytes, equal %v", resp.Code(), len(got), bytes.Equal(got, data))
		}
	})
}

func TestRefusals(t *testing.T) {
	svc := initService(t)
	art, _ := publish(t, svc, 4096)
	co := dial(t, startServer(t, svc), false)
	good := auth(testDevice, testPassword)
	for _, tc := range []struct {
		name string
		path string
		opts []message.Option
		want []codes.Code
	}{
		{"wrong password", targetURIPath(art), auth(testDevice, "wrong"), []codes.Code{codes.Unauthorized}},
		{"unknown device", "/tuf/metadata/timestamp.json", auth("dev-2", testPassword), []codes.Code{codes.Unauthorized}},
		{"no credentials", "/tuf/metadata/timestamp.json", nil, []codes.Code{codes.Unauthorized}},
		{"metadata traversal", "/tuf/metadata/..", good, []codes.Code{codes.NotFound, codes.BadRequest}},
		{"target traversal", "/tuf/targets/app/../../metadata/timestamp.json", good, []codes.Code{codes.NotFound, codes.BadRequest}},
		{"target traversal to keys", "/tuf/targets/../keys/targets.key", good, []codes.Code{codes.NotFound, codes.BadRequest}},
		{"hidden segment", "/tuf/targets/.app/1.0.0/x", good, []codes.Code{codes.NotFound}},
		{"unknown metadata", "/tuf/metadata/9.root.json", good, []codes.Code{codes.NotFound}},
		{"unknown tree", "/tuf/keys/targets.key", good, []codes.Code{codes.NotFound}},
		{"metadata subdirectory", "/tuf/metadata/a/root.json", good, []codes.Code{codes.NotFound}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := get(t, co, tc.path, 0, blockwise.SZX1024, tc.opts...)
			for _, w := range tc.want {
				if b.code == w {
					return
				}
			}
			t.Errorf("GET %s: %v, want one of %v", tc.path, b.code, tc.want)
			if len(b.payload) > 0 {
				t.Errorf("refusal carries %d bytes", len(b.payload))
			}
		})
	}

	t.Run("segment with a slash", func(t *testing.T) {
		// go-coap splits paths at '/', so build the options by hand: one
		// URI-Path option holding "../keys" must not reach the file system.
		opts := append([]message.Option{
			{ID: message.URIPath, Value: []byte("tuf")},
			{ID: message.URIPath, Value: []byte("targets")},
			{ID: message.URIPath, Value: []byte("../keys/targets.key")},
		}, good...)
		b := get(t, co, "", 0, blockwise.SZX1024, opts...)
		if b.code != codes.BadRequest {
			t.Errorf("segment with '/': %v, want 4.00", b.code)
		}
	})

	t.Run("method", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := co.Delete(ctx, "/tuf/metadata/timestamp.json", good...)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Code() != codes.MethodNotAllowed {
			t.Errorf("DELETE: %v, want 4.05", resp.Code())
		}
	})
}

func TestListenValidates(t *testing.T) {
	_, err := Listen(Options{Addr: "127.0.0.1:0", BlockSize: 1000})
	if err == nil {
		t.Fatal("Listen accepted no files, no authenticator and block size 1000")
	}
	for _, want := range []string{"repository files", "authenticator", "block size 1000"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	// A second server on the same port fails at Listen, not later.
	s, err := Listen(Options{Addr: "127.0.0.1:0", Files: initService(t), Devices: devices{}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = Listen(Options{Addr: s.Addr().String(), Files: initService(t), Devices: devices{}})
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Errorf("second Listen on %s: %v, want a *net.OpError", s.Addr(), err)
	}
	s.Close() // twice is fine
}
