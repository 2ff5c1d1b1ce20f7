//go:build coap

package ota

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/internal/coaptick"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	"github.com/plgd-dev/go-coap/v3/udp/client"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
)

// coapSZX is the Block2 size the agent asks for: 1024 bytes (SZX 6). The
// hub may answer with smaller blocks; the agent then follows its size.
const coapSZX = blockwise.SZX1024

// coapConn is a CoAP exchange with the hub over one UDP socket, with
// go-coap's block-wise layer off: the agent asks for each block itself,
// so it can start at any block and never holds more than one.
type coapConn struct {
	co   *client.Conn
	tick *coaptick.Ticker
	id   string
	pw   string
}

// dialCoAP opens a UDP socket to the hub's CoAP address.
func (c *Client) dialCoAP() (*coapConn, error) {
	u, err := url.Parse(c.cfg.CoAPURL)
	if err != nil {
		return nil, err // Validate checked it
	}
	tick := coaptick.New()
	co, err := udp.Dial(u.Host,
		options.WithBlockwise(false, coapSZX, time.Minute),
		options.WithPeriodicRunner(tick.Run),
		options.WithErrors(func(err error) { c.log.Debug("CoAP connection error", "err", err) }),
	)
	if err != nil {
		tick.Stop()
		return nil, fmt.Errorf("dialing CoAP hub %s: %w", u.Host, err)
	}
	return &coapConn{co: co, tick: tick, id: c.cfg.DeviceID, pw: c.cfg.Password}, nil
}

// close closes the socket and waits for go-coap's goroutines.
func (cc *coapConn) close() {
	_ = cc.co.Close()
	<-cc.co.Done()
	cc.tick.Stop()
}

// coapBlock is one Block2 answer.
type coapBlock struct {
	szx  blockwise.SZX
	more bool
	// size2 is the whole file's length announced by the hub, -1 if none.
	size2   int64
	payload []byte
}

// coapStatusError is a CoAP answer other than 2.05 Content.
type coapStatusError struct {
	Code codes.Code
	Path string
}

func (e *coapStatusError) Error() string {
	return fmt.Sprintf("CoAP GET %s: %v", e.Path, e.Code)
}

// reason maps the status to a download failure reason.
func (e *coapStatusError) reason() Reason {
	switch e.Code {
	case codes.NotFound:
		return ReasonNotFound
	case codes.Unauthorized, codes.Forbidden:
		return ReasonUnauthorized
	}
	return ReasonIO
}

// httpStatus maps the status to the HTTP status go-tuf's updater
// understands (it treats 403 and 404 of the next root as "no newer
// root").
func (e *coapStatusError) httpStatus() int {
	switch e.Code {
	case codes.NotFound:
		return 404
	case codes.Unauthorized:
		return 401
	case codes.Forbidden:
		return 403
	}
	return 502
}

// block asks for the block of path starting at byte off, in blocks of
// szx (off must be a multiple of its size), and checks that the answer is
// that block: a hub may answer with smaller blocks, never with another
// offset, and every block but the last is full.
func (cc *coapConn) block(ctx context.Context, path string, off int64, szx blockwise.SZX) (coapBlock, error) {
	v, err := blockwise.EncodeBlockOption(szx, off/szx.Size(), false)
	if err != nil {
		return coapBlock{}, fmt.Errorf("CoAP GET %s at byte %d: %w", path, off, err)
	}
	b := make([]byte, 4)
	n, _ := message.EncodeUint32(b, v)
	resp, err := cc.co.Get(ctx, path,
		message.Option{ID: message.Block2, Value: b[:n]},
		message.Option{ID: message.URIQuery, Value: []byte("d=" + cc.id)},
		message.Option{ID: message.URIQuery, Value: []byte("p=" + cc.pw)},
	)
	if err != nil {
		return coapBlock{}, fmt.Errorf("CoAP GET %s at byte %d: %w", path, off, err)
	}
	defer cc.co.ReleaseMessage(resp)
	if resp.Code() != codes.Content {
		return coapBlock{}, &coapStatusError{Code: resp.Code(), Path: path}
	}
	out := coapBlock{szx: szx, size2: -1}
	var num int64
	if v, err := resp.Options().GetUint32(message.Block2); err == nil {
		if out.szx, num, out.more, err = blockwise.DecodeBlockOption(v); err != nil {
			return coapBlock{}, fmt.Errorf("CoAP GET %s: bad Block2 option: %w", path, err)
		}
	} else if off != 0 {
		return coapBlock{}, fmt.Errorf("CoAP GET %s: no Block2 option in the answer for byte %d", path, off)
	}
	if out.szx > szx || num*out.szx.Size() != off {
		return coapBlock{}, fmt.Errorf("CoAP GET %s: asked for byte %d in blocks of %d, answered block %d of %d", path, off, szx.Size(), num, out.szx.Size())
	}
	if v, err := resp.Options().GetUint32(message.Size2); err == nil {
		out.size2 = int64(v)
	}
	if body := resp.Body(); body != nil {
		if out.payload, err = io.ReadAll(io.LimitReader(body, out.szx.Size()+1)); err != nil {
			return coapBlock{}, fmt.Errorf("CoAP GET %s: reading block: %w", path, err)
		}
	}
	if int64(len(out.payload)) > out.szx.Size() || (out.more && int64(len(out.payload)) != out.szx.Size()) {
		return coapBlock{}, fmt.Errorf("CoAP GET %s: block of %d bytes in blocks of %d", path, len(out.payload), out.szx.Size())
	}
	return out, nil
}

// coapFetcher is go-tuf's Fetcher over CoAP: it reads a metadata file
// block by block, never keeping more than maxLength bytes.
type coapFetcher struct {
	ctx context.Context
	c   *Client
}

var _ fetcher.Fetcher = (*coapFetcher)(nil)

// CoAPSupported reports whether this build has the CoAP transport (build
// tag coap).
const CoAPSupported = true

func (c *Client) newCoAPFetcher(ctx context.Context) fetcher.Fetcher {
	return &coapFetcher{ctx: ctx, c: c}
}

// DownloadFile implements fetcher.Fetcher. Statuses other than 2.05 are
// returned as *metadata.ErrDownloadHTTP with the matching HTTP status, so
// go-tuf's updater handles a missing next root as over HTTP.
func (f *coapFetcher) DownloadFile(u string, maxLength int64, _ time.Duration) ([]byte, error) {
	pu, err := url.Parse(u)
	if err != nil || pu.Scheme != "coap" {
		return nil, fmt.Errorf("fetching %s: not a coap:// URL", u)
	}
	cc, err := f.c.dialCoAP()
	if err != nil {
		return nil, err
	}
	defer cc.close()
	var data []byte
	szx := coapSZX
	for {
		b, err := cc.block(f.ctx, pu.Path, int64(len(data)), szx)
		var se *coapStatusError
		if errors.As(err, &se) {
			return nil, &metadata.ErrDownloadHTTP{StatusCode: se.httpStatus(), URL: u}
		}
		if err != nil {
			return nil, err
		}
		if b.size2 > maxLength || int64(len(data)+len(b.payload)) > maxLength {
			return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s: more than the limit of %d bytes", u, maxLength)}
		}
		data = append(data, b.payload...)
		szx = b.szx
		if !b.more {
			return data, nil
		}
	}
}

// fetchCoAP is fetch over CoAP: it brings part up to t.Length bytes block
// by block, resuming at the block holding the checkpoint (a partial block
// at its end is fetched again), and returns the checkpoint it resumed
// from (0 if none or discarded).
func (c *Client) fetchCoAP(ctx context.Context, t *Target, part string, st *DownloadStats, progress func(int64, int64)) (resumedFrom int64, err error) {
	f, off, err := openCheckpoint(part, t.Length)
	if err != nil {
		return 0, err
	}
	defer func() {
		if f == nil {
			return // removed
		}
		if cerr := f.Close(); cerr != nil && err == nil {
			err = newErr(ReasonIO, "closing checkpoint: %w", cerr)
		}
	}()
	if off == t.Length {
		return off, nil // complete; the caller verifies it
	}
	if tail := off % coapSZX.Size(); tail != 0 {
		off -= tail
		st.BytesRefetched += tail
		if err := f.Truncate(off); err != nil {
			return 0, newErr(ReasonIO, "truncating checkpoint to a block boundary: %w", err)
		}
	}
	resumedFrom = off
	if off > 0 {
		st.Resumes++
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return resumedFrom, newErr(ReasonIO, "seeking checkpoint: %w", err)
	}

	var got atomic.Int64
	rctx, rcancel := context.WithCancelCause(ctx)
	defer rcancel(nil)
	stop := c.startWatchdog(&got, rcancel)
	defer stop()

	cc, err := c.dialCoAP()
	if err != nil {
		return resumedFrom, newErr(ReasonIO, "%w", err)
	}
	defer cc.close()

	path := c.targetPath(t)
	discard := func(e *Error) (int64, error) {
		_ = f.Close()
		f = nil
		_ = os.Remove(part)
		return 0, e
	}
	var unsynced int64
	szx := coapSZX
	for {
		b, err := cc.block(rctx, path, off, szx)
		if err != nil {
			serr := f.Sync()
			var se *coapStatusError
			if errors.As(err, &se) {
				return resumedFrom, errors.Join(newErr(se.reason(), "fetching %s at byte %d: %w", t.Path, off, err), serr)
			}
			return resumedFrom, errors.Join(c.readErr(ctx, rctx, fmt.Sprintf("fetching %s at byte %d", t.Path, off), err), serr)
		}
		if b.size2 > t.Length {
			return discard(newErr(ReasonTooLarge, "fetching %s: hub announces %d bytes, more than the signed length %d", t.Path, b.size2, t.Length))
		}
		if off+int64(len(b.payload)) > t.Length {
			return discard(newErr(ReasonTooLarge, "fetching %s: hub sends more than the signed length %d (endless data)", t.Path, t.Length))
		}
		if _, werr := f.Write(b.payload); werr != nil {
			return resumedFrom, newErr(ReasonIO, "writing checkpoint: %w", werr)
		}
		n := int64(len(b.payload))
		off += n
		unsynced += n
		st.BytesFetched += n
		got.Add(n)
		if unsynced >= c.cfg.SyncEvery {
			if err := f.Sync(); err != nil {
				return resumedFrom, newErr(ReasonIO, "syncing checkpoint: %w", err)
			}
			unsynced = 0
		}
		progress(off, t.Length)
		szx = b.szx
		switch {
		case b.more && off == t.Length:
			return discard(newErr(ReasonTooLarge, "fetching %s: hub has more blocks after the signed length %d (endless data)", t.Path, t.Length))
		case !b.more && off < t.Length:
			serr := f.Sync()
			return resumedFrom, errors.Join(newErr(ReasonIO, "fetching %s: the hub's file ends at byte %d, before the signed length %d", t.Path, off, t.Length), serr)
		case !b.more:
			if err := f.Sync(); err != nil {
				return resumedFrom, newErr(ReasonIO, "syncing checkpoint: %w", err)
			}
			return resumedFrom, nil
		}
	}
}
