package ota

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/internal/atomicfile"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// DownloadStats describes one Download call.
type DownloadStats struct {
	// BytesFetched is how many artifact bytes this call received and
	// wrote.
	BytesFetched int64
	// BytesRefetched is how many of them had been downloaded before and
	// were fetched again: the checkpoint was discarded because the server
	// ignored the Range request (200) or the resumed file failed
	// verification. Bytes resumed from the checkpoint are not re-fetched.
	BytesRefetched int64
	// Resumes counts requests that continued from a non-empty checkpoint.
	Resumes int
	// Duration is the wall time of the call.
	Duration time.Duration
	// Delta is true when DownloadDelta rebuilt the artifact from a signed
	// delta and the installed file; DeltaBytes is that delta's signed
	// size (also set when the delta was tried and not used).
	Delta      bool
	DeltaBytes int64
	// FellBack is true when DownloadDelta downloaded the full artifact
	// instead of using a delta; FallbackReason (a Fallback… constant)
	// says why.
	FellBack       bool
	FallbackReason string
}

// Causes of a download's context being canceled by this package.
var (
	errTooSlow     = errors.New("download slower than the minimum throughput")
	errMaxDuration = errors.New("download took longer than the maximum download time")
)

// targetURL is where the hub serves t over HTTP.
func (c *Client) targetURL(t *Target) string { return c.cfg.HubURL + c.targetPath(t) }

// targetPath is the path under which the hub serves t, over HTTP and
// CoAP: consistent snapshots prefix the last path element with the
// sha256 hash.
func (c *Client) targetPath(t *Target) string {
	dir, base := "", t.Path
	if i := strings.LastIndex(t.Path, "/"); i >= 0 {
		dir, base = t.Path[:i+1], t.Path[i+1:]
	}
	return "/tuf/targets/" + dir + t.SHA256 + "." + base
}

// Download fetches the artifact t into DataDir/ota/downloads/<sha256> and
// returns that path once the file matches t's signed length and hashes.
//
// Progress survives interruptions: bytes are written to <sha256>.part,
// whose size is the checkpoint (fsynced every Config.SyncEvery bytes), and
// the next call — in this process or after a reboot — asks the hub for
// the rest with a Range request. The server may never send more than the
// signed length (ReasonTooLarge), must keep up Config.MinThroughput over
// every Config.ThroughputWindow, and the call must finish within
// Config.MaxDownloadTime (ReasonTooSlow). A file that fails verification
// is deleted (ReasonTampered). progress, if not nil, is called with the
// bytes on disk and the total as they grow.
func (c *Client) Download(ctx context.Context, t *Target, progress func(done, total int64)) (path string, stats DownloadStats, err error) {
	if t == nil || t.File == nil || len(t.SHA256) != 64 || strings.ContainsAny(t.SHA256, "/\\.") {
		return "", stats, newErr(ReasonInvalid, "downloading: target did not come from Lookup")
	}
	if progress == nil {
		progress = func(int64, int64) {}
	}
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	start := time.Now()
	defer func() { stats.Duration = time.Since(start) }()
	log := c.log.With("target", t.Path)

	final := filepath.Join(c.dlDir, t.SHA256)
	if _, err := os.Stat(final); err == nil {
		if verr := verifyFile(final, t.File); verr == nil {
			progress(t.Length, t.Length)
			return final, stats, nil
		}
		log.Warn("removing downloaded file that fails verification", "path", final)
		if err := os.Remove(final); err != nil {
			return "", stats, newErr(ReasonIO, "removing %s: %w", final, err)
		}
	}

	ctx, cancel := context.WithTimeoutCause(ctx, c.cfg.MaxDownloadTime, errMaxDuration)
	defer cancel()
	part := final + ".part"
	fetch := c.fetch
	if c.cfg.CoAPURL != "" {
		fetch = c.fetchCoAP
	}
	for pass := 0; ; pass++ {
		resumedFrom, err := fetch(ctx, t, part, &stats, progress)
		if err != nil {
			log.Warn("download failed", "reason", ReasonOf(err), "err", err)
			return "", stats, err
		}
		verr := verifyFile(part, t.File)
		if verr == nil {
			break
		}
		if err := os.Remove(part); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.Warn("removing unverified download", "err", err)
		}
		if !errors.Is(verr, &metadata.ErrLengthOrHashMismatch{}) {
			return "", stats, newErr(ReasonIO, "verifying %s: %w", t.Path, verr)
		}
		if pass == 0 && resumedFrom > 0 {
			// The prefix came from an earlier call, perhaps from before a
			// power loss that left the checkpoint's tail unwritten: fetch
			// everything once more before calling the artifact tampered.
			log.Warn("resumed download fails verification; fetching it again from the start", "err", verr)
			stats.BytesRefetched += resumedFrom
			continue
		}
		return "", stats, newErr(ReasonTampered, "downloaded %s does not match its signed length and hashes (tampered): %w", t.Path, verr)
	}
	if err := os.Rename(part, final); err != nil {
		return "", stats, newErr(ReasonIO, "renaming download: %w", err)
	}
	if err := atomicfile.SyncDir(c.dlDir); err != nil {
		return "", stats, newErr(ReasonIO, "syncing %s: %w", c.dlDir, err)
	}
	log.Info("download verified", "bytes", stats.BytesFetched, "resumes", stats.Resumes, "refetched", stats.BytesRefetched)
	return final, stats, nil
}

// openCheckpoint opens (or creates) the download checkpoint part and
// returns it with the offset to resume from: its size, or 0 after
// discarding a checkpoint longer than the signed length.
func openCheckpoint(part string, length int64) (*os.File, int64, error) {
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, 0, newErr(ReasonIO, "opening checkpoint: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, newErr(ReasonIO, "reading checkpoint: %w", err)
	}
	off := fi.Size()
	if off > length {
		off = 0
		if err := f.Truncate(0); err != nil {
			f.Close()
			return nil, 0, newErr(ReasonIO, "discarding checkpoint: %w", err)
		}
	}
	return f, off, nil
}

// fetch brings part up to t.Length bytes with one request, starting from
// the checkpoint. It returns the checkpoint it resumed from (0 if none or
// discarded).
func (c *Client) fetch(ctx context.Context, t *Target, part string, st *DownloadStats, progress func(int64, int64)) (resumedFrom int64, err error) {
	f, off, err := openCheckpoint(part, t.Length)
	if err != nil {
		return 0, err
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = newErr(ReasonIO, "closing checkpoint: %w", cerr)
		}
	}()
	if off == t.Length {
		return off, nil // complete; the caller verifies it
	}
	resumedFrom = off

	// The watchdog cancels the request when fewer than minPerWindow bytes
	// arrived in a window, headers included.
	var got atomic.Int64
	rctx, rcancel := context.WithCancelCause(ctx)
	defer rcancel(nil)
	defer c.startWatchdog(&got, rcancel)()

	hdr := http.Header{}
	if off > 0 {
		hdr.Set("Range", fmt.Sprintf("bytes=%d-", off))
	}
	res, err := c.get(rctx, c.targetURL(t), hdr)
	if err != nil {
		return resumedFrom, c.readErr(ctx, rctx, "requesting "+t.Path, err)
	}
	defer res.Body.Close()
	switch res.StatusCode {
	case http.StatusPartialContent:
		if off == 0 {
			return 0, newErr(ReasonIO, "fetching %s: unrequested partial content", t.Path)
		}
		if err := checkContentRange(res.Header.Get("Content-Range"), off, t.Length); err != nil {
			// Start over next time rather than trust this server's ranges.
			_ = f.Truncate(0)
			return resumedFrom, newErr(ReasonIO, "fetching %s: %w", t.Path, err)
		}
		st.Resumes++
	case http.StatusOK:
		if off > 0 {
			c.log.Info("server ignored the Range request; restarting the download", "target", t.Path, "discarded", off)
			st.BytesRefetched += off
			off, resumedFrom = 0, 0
			if err := f.Truncate(0); err != nil {
				return 0, newErr(ReasonIO, "discarding checkpoint: %w", err)
			}
		}
	default:
		return resumedFrom, newErr(httpReason(res.StatusCode), "fetching %s: HTTP status %s", t.Path, res.Status)
	}
	remaining := t.Length - off
	if res.ContentLength > remaining {
		return resumedFrom, newErr(ReasonTooLarge, "fetching %s: server announces %d bytes, only %d remain of the signed length %d",
			t.Path, res.ContentLength, remaining, t.Length)
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return resumedFrom, newErr(ReasonIO, "seeking checkpoint: %w", err)
	}

	buf := make([]byte, 32<<10)
	var unsynced int64
	for remaining > 0 {
		n, rerr := res.Body.Read(buf[:min(int64(len(buf)), remaining)])
		if n > 0 {
			if _, werr := f.Write(buf[:n]); werr != nil {
				return resumedFrom, newErr(ReasonIO, "writing checkpoint: %w", werr)
			}
			off += int64(n)
			remaining -= int64(n)
			unsynced += int64(n)
			st.BytesFetched += int64(n)
			got.Add(int64(n))
			if unsynced >= c.cfg.SyncEvery {
				if err := f.Sync(); err != nil {
					return resumedFrom, newErr(ReasonIO, "syncing checkpoint: %w", err)
				}
				unsynced = 0
			}
			progress(off, t.Length)
		}
		if rerr == io.EOF && remaining > 0 {
			rerr = io.ErrUnexpectedEOF
		}
		if rerr != nil && rerr != io.EOF {
			serr := f.Sync()
			return resumedFrom, errors.Join(c.readErr(ctx, rctx, fmt.Sprintf("fetching %s at byte %d", t.Path, off), rerr), serr)
		}
	}
	if err := f.Sync(); err != nil {
		return resumedFrom, newErr(ReasonIO, "syncing checkpoint: %w", err)
	}
	if res.ContentLength < 0 {
		// Unknown length: make sure the server stops at the signed length
		// (endless data). A server that neither ends nor sends is cut off
		// by the watchdog.
		n, rerr := res.Body.Read(buf[:1])
		if n > 0 {
			_ = f.Close()
			_ = os.Remove(part)
			return 0, newErr(ReasonTooLarge, "fetching %s: server sends more than the signed length %d (endless data)", t.Path, t.Length)
		}
		if rerr != nil && rerr != io.EOF {
			return resumedFrom, c.readErr(ctx, rctx, "fetching "+t.Path+" past its end", rerr)
		}
	}
	return resumedFrom, nil
}

// startWatchdog runs watchdog until the returned function is called,
// which waits for it to exit.
func (c *Client) startWatchdog(got *atomic.Int64, cancel context.CancelCauseFunc) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.watchdog(done, got, cancel)
	}()
	return func() { close(done); wg.Wait() }
}

// watchdog cancels a request through cancel when fewer bytes than
// MinThroughput × ThroughputWindow arrived (as counted in got) during a
// window, until done is closed.
func (c *Client) watchdog(done <-chan struct{}, got *atomic.Int64, cancel context.CancelCauseFunc) {
	window := c.cfg.ThroughputWindow
	least := int64(float64(c.cfg.MinThroughput) * window.Seconds())
	tk := time.NewTicker(window)
	defer tk.Stop()
	var last int64
	for {
		select {
		case <-done:
			return
		case <-tk.C:
			n := got.Load()
			if n-last < least {
				cancel(fmt.Errorf("%w: %d bytes in %s, want at least %d", errTooSlow, n-last, window, least))
				return
			}
			last = n
		}
	}
}

// readErr classifies an error of the request whose context is rctx, a
// child of the download's context ctx.
func (c *Client) readErr(ctx, rctx context.Context, doing string, err error) *Error {
	cause := context.Cause(rctx)
	switch {
	case errors.Is(cause, errTooSlow), errors.Is(cause, errMaxDuration):
		return &Error{Reason: ReasonTooSlow, Err: fmt.Errorf("%s: %w", doing, cause)}
	case ctx.Err() != nil:
		return &Error{Reason: ReasonCanceled, Err: fmt.Errorf("%s: %w", doing, context.Cause(ctx))}
	}
	return &Error{Reason: ReasonIO, Err: fmt.Errorf("%s: %w", doing, err)}
}

// checkContentRange checks a 206 answer's "bytes first-last/total" header
// against the requested offset and the signed length.
func checkContentRange(h string, off, length int64) error {
	rest, ok := strings.CutPrefix(h, "bytes ")
	if !ok {
		return fmt.Errorf("bad Content-Range %q", h)
	}
	rng, total, ok := strings.Cut(rest, "/")
	if !ok {
		return fmt.Errorf("bad Content-Range %q", h)
	}
	first, last, ok := strings.Cut(rng, "-")
	if !ok {
		return fmt.Errorf("bad Content-Range %q", h)
	}
	f, err1 := strconv.ParseInt(first, 10, 64)
	l, err2 := strconv.ParseInt(last, 10, 64)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("bad Content-Range %q", h)
	}
	if f != off || l != length-1 || l < f {
		return fmt.Errorf("Content-Range %q does not answer bytes=%d- of %d", h, off, length)
	}
	if total != "*" {
		if n, err := strconv.ParseInt(total, 10, 64); err != nil || n != length {
			return fmt.Errorf("Content-Range %q disagrees with the signed length %d", h, length)
		}
	}
	return nil
}
