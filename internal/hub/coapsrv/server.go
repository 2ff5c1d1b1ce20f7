package coapsrv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/coaptick"
	"github.com/outpost-edge/outpost/internal/hub/ota"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	coapnet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpserver "github.com/plgd-dev/go-coap/v3/udp/server"
)

// DefaultBlockSize is the Block2 size the server answers with unless the
// device asks for smaller blocks: 1024 bytes (SZX 6), the largest that
// CoAP over UDP allows.
const DefaultBlockSize = 1024

// Files opens the repository's files; *ota.Service implements it. Both
// methods return errors wrapping ota.ErrNotFound for unknown files and for
// paths that are not clean, and must be safe for concurrent use.
type Files interface {
	OpenMetadata(name string) (*os.File, error)
	OpenTarget(p string) (*os.File, error)
}

// Authenticator checks a device's id and MQTT password; the device
// service implements it. It must be safe for concurrent use.
type Authenticator interface {
	Authenticate(ctx context.Context, id, password string) bool
}

// Options configure a Server.
type Options struct {
	// Addr is the UDP listen address, e.g. ":5683".
	Addr string
	// Files serves the metadata and targets.
	Files Files
	// Devices authenticates every request.
	Devices Authenticator
	// BlockSize is the largest Block2 size the server answers with: a power
	// of two from 16 to 1024. Zero means DefaultBlockSize.
	BlockSize int
	// Logger receives failures; nil discards. Passwords are never logged.
	Logger *slog.Logger
}

// Server is the CoAP server. Listen binds it, Run serves until its context
// ends, Close releases the socket if Run never ran; Close is safe to call
// more than once.
type Server struct {
	files   Files
	devices Authenticator
	szx     blockwise.SZX
	log     *slog.Logger
	ln      *coapnet.UDPConn
	srv     *udpserver.Server
	tick    *coaptick.Ticker

	closeOnce sync.Once
}

// Listen validates opts and binds the UDP socket.
func Listen(opts Options) (*Server, error) {
	var errs []error
	if opts.Addr == "" {
		errs = append(errs, errors.New("listen address is empty"))
	}
	if opts.Files == nil {
		errs = append(errs, errors.New("no repository files"))
	}
	if opts.Devices == nil {
		errs = append(errs, errors.New("no device authenticator"))
	}
	if opts.BlockSize == 0 {
		opts.BlockSize = DefaultBlockSize
	}
	szx, ok := szxOf(opts.BlockSize)
	if !ok {
		errs = append(errs, fmt.Errorf("block size %d is not a power of two from 16 to 1024", opts.BlockSize))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("configuring the CoAP server: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{files: opts.Files, devices: opts.Devices, szx: szx, log: log.With("component", "coap"), tick: coaptick.New()}
	ln, err := coapnet.NewListenUDP("udp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("listening for CoAP on %s: %w", opts.Addr, err)
	}
	s.ln = ln
	r := mux.NewRouter()
	r.DefaultHandleFunc(s.handle)
	s.srv = udp.NewServer(
		options.WithMux(r),
		// Block2 is answered by handle, statelessly; go-coap's own
		// block-wise layer would buffer every whole response in memory.
		options.WithBlockwise(false, szx, time.Minute),
		options.WithErrors(func(err error) { s.log.Debug("CoAP connection error", "err", err) }),
		options.WithPeriodicRunner(s.tick.Run),
	)
	return s, nil
}

// Addr is the bound UDP address.
func (s *Server) Addr() net.Addr { return s.ln.LocalAddr() }

// Run serves until ctx ends, then stops the server and returns once its
// goroutine has exited.
func (s *Server) Run(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- s.srv.Serve(s.ln) }()
	select {
	case <-ctx.Done():
		s.Close()
		<-done
		return nil
	case err := <-done:
		s.Close()
		if err != nil {
			return fmt.Errorf("serving CoAP: %w", err)
		}
		return nil
	}
}

// Close stops the server and closes its socket.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.srv.Stop()
		_ = s.ln.Close() // already closed by Stop when Serve ran
		s.tick.Stop()
	})
}

// szxOf returns the SZX of a block size.
func szxOf(size int) (blockwise.SZX, bool) {
	for szx := blockwise.SZX16; szx <= blockwise.SZX1024; szx++ {
		if szx.Size() == int64(size) {
			return szx, true
		}
	}
	return 0, false
}

// reply answers with an empty response of code.
func (s *Server) reply(w mux.ResponseWriter, code codes.Code) {
	if err := w.SetResponse(code, message.TextPlain, nil); err != nil {
		s.log.Debug("answering CoAP request", "code", code, "err", err)
	}
}

func (s *Server) handle(w mux.ResponseWriter, r *mux.Message) {
	if r.Code() != codes.GET {
		s.reply(w, codes.MethodNotAllowed)
		return
	}
	id, password := credentials(r.Options())
	if id == "" || !s.devices.Authenticate(r.Context(), id, password) {
		s.reply(w, codes.Unauthorized)
		return
	}
	segs, ok := uriPath(r.Options())
	if !ok {
		s.reply(w, codes.BadRequest)
		return
	}
	var (
		f           *os.File
		err         error
		contentType = message.AppJSON
	)
	switch {
	case len(segs) == 3 && segs[0] == "tuf" && segs[1] == "metadata":
		f, err = s.files.OpenMetadata(segs[2])
	case len(segs) >= 3 && segs[0] == "tuf" && segs[1] == "targets":
		contentType = message.AppOctets
		f, err = s.files.OpenTarget(strings.Join(segs[2:], "/"))
	default:
		s.reply(w, codes.NotFound)
		return
	}
	switch {
	case errors.Is(err, ota.ErrNotFound):
		s.reply(w, codes.NotFound)
		return
	case errors.Is(err, ota.ErrInvalid):
		s.reply(w, codes.BadRequest)
		return
	case err != nil:
		s.log.Error("opening repository file for CoAP", "device", id, "err", err)
		s.reply(w, codes.InternalServerError)
		return
	}
	defer f.Close()
	s.serveBlock(w, r, id, f, contentType)
}

// serveBlock answers with the block of f the request's Block2 option asks
// for (block 0 without one), in the smaller of the requested size and the
// server's, with Size2 carrying f's length.
func (s *Server) serveBlock(w mux.ResponseWriter, r *mux.Message, id string, f *os.File, contentType message.MediaType) {
	fi, err := f.Stat()
	if err != nil {
		s.log.Error("stat of repository file for CoAP", "device", id, "err", err)
		s.reply(w, codes.InternalServerError)
		return
	}
	length := fi.Size()
	szx, num := s.szx, int64(0)
	if v, err := r.Options().GetUint32(message.Block2); err == nil {
		rszx, rnum, _, err := blockwise.DecodeBlockOption(v)
		if err != nil {
			s.reply(w, codes.BadOption)
			return
		}
		if rszx > blockwise.SZX1024 {
			rszx = blockwise.SZX1024 // BERT is for CoAP over TCP only
		}
		off := rnum * rszx.Size()
		if rszx < szx {
			szx = rszx
		}
		num = off / szx.Size()
	} else if !errors.Is(err, message.ErrOptionNotFound) {
		s.reply(w, codes.BadOption)
		return
	}
	size := szx.Size()
	off := num * size
	if off > length || (off == length && length > 0) {
		// RFC 7959 §2.2: a block past the end is a bad option.
		s.reply(w, codes.BadOption)
		return
	}
	buf := make([]byte, min(size, length-off))
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		s.log.Error("reading repository file for CoAP", "device", id, "err", err)
		s.reply(w, codes.InternalServerError)
		return
	}
	more := off+int64(len(buf)) < length
	block, err := blockwise.EncodeBlockOption(szx, num, more)
	if err != nil {
		// The block number does not fit the option's 20 bits.
		s.reply(w, codes.BadOption)
		return
	}
	opts := message.Options{
		{ID: message.Block2, Value: uint32Bytes(block)},
		{ID: message.Size2, Value: uint32Bytes(uint32(min(length, int64(^uint32(0)))))},
	}
	if err := w.SetResponse(codes.Content, contentType, bytes.NewReader(buf), opts...); err != nil {
		s.log.Debug("answering CoAP request", "device", id, "err", err)
	}
}

// uint32Bytes encodes v as a CoAP uint option value: big endian, without
// leading zero bytes.
func uint32Bytes(v uint32) []byte {
	b := make([]byte, 4)
	n, _ := message.EncodeUint32(b, v)
	return b[:n]
}

// credentials returns the device id (d=) and password (p=) of the
// URI-Query options.
func credentials(opts message.Options) (id, password string) {
	for _, o := range opts {
		if o.ID != message.URIQuery {
			continue
		}
		k, v, _ := strings.Cut(string(o.Value), "=")
		switch k {
		case "d":
			id = v
		case "p":
			password = v
		}
	}
	return id, password
}

// uriPath returns the URI-Path segments; false if one is empty or holds a
// character that would change the path once joined ('/', '\', NUL).
func uriPath(opts message.Options) ([]string, bool) {
	var segs []string
	for _, o := range opts {
		if o.ID != message.URIPath {
			continue
		}
		seg := string(o.Value)
		if seg == "" || strings.ContainsAny(seg, "/\\\x00") {
			return nil, false
		}
		segs = append(segs, seg)
	}
	return segs, true
}
