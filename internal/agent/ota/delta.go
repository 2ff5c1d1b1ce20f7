package ota

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/atomicfile"
	"github.com/outpost-edge/outpost/internal/otadelta"
)

// Why DownloadDelta fell back to the full artifact
// (DownloadStats.FallbackReason). Stable: add, never rename.
const (
	// FallbackNoDelta: the signed targets list no delta from the
	// installed version (or it is malformed).
	FallbackNoDelta = "no_delta"
	// FallbackDeltaDownload: the delta could not be downloaded or did not
	// match its signed length and hashes.
	FallbackDeltaDownload = "delta_download_failed"
	// FallbackBase: the installed file is unreadable or is not the file
	// the delta was built against (changed, corrupted, another build).
	FallbackBase = "base_mismatch"
	// FallbackBadDelta: the signed delta does not decode (corrupt, or it
	// announces more output than the full artifact's signed length).
	FallbackBadDelta = "bad_delta"
	// FallbackOutput: the patched output does not match the full
	// artifact's signed length and hashes.
	FallbackOutput = "output_mismatch"
	// FallbackIO: writing the patched output failed.
	FallbackIO = "io"
)

// deltaSuffix joins a full target path and the version its delta patches:
// {name}/{version}/{platform}.from-{installed}.
const deltaSuffix = ".from-"

// DownloadDelta is Download of full for a device that has version
// installedVersion of the artifact installed at installedPath: if the
// signed targets list a delta from that version, it downloads the delta
// (resumable and verified against its own signed length and hashes, as
// Download does), patches a read-only map of the installed file with it
// (package otadelta: decoding is capped at full's signed length) and
// verifies the result against full's signed length and hashes. Only then
// is the result stored as DataDir/ota/downloads/<sha256>, where Download
// would have put it.
//
// Any failure on the delta path — no delta, a delta that fails to download
// or decode, an installed file that differs from the one the delta was
// built against, an output that does not verify — is logged and followed
// by Download(ctx, full, progress); stats.FellBack and
// stats.FallbackReason tell which. Cancellation is returned, not retried.
// progress, if not nil, reports the full download only.
func (c *Client) DownloadDelta(ctx context.Context, full *Target, installedPath, installedVersion string, progress func(done, total int64)) (path string, stats DownloadStats, err error) {
	if full == nil || full.File == nil || len(full.SHA256) != 64 || strings.ContainsAny(full.SHA256, "/\\.") {
		return "", stats, newErr(ReasonInvalid, "downloading: target did not come from Lookup")
	}
	start := time.Now()
	defer func() { stats.Duration = time.Since(start) }()
	log := c.log.With("target", full.Path, "installed", installedVersion)
	if verifyFile(filepath.Join(c.dlDir, full.SHA256), full.File) == nil {
		return c.Download(ctx, full, progress) // already downloaded
	}
	fallback := func(reason string, cause error) (string, DownloadStats, error) {
		log.Warn("delta update not used; downloading the full artifact", "reason", reason, "err", cause)
		p, fst, err := c.Download(ctx, full, progress)
		fst.BytesFetched += stats.BytesFetched
		fst.BytesRefetched += stats.BytesRefetched
		fst.Resumes += stats.Resumes
		fst.DeltaBytes, fst.FellBack, fst.FallbackReason = stats.DeltaBytes, true, reason
		return p, fst, err
	}

	dt, err := c.lookupDelta(full, installedVersion)
	if err != nil {
		return fallback(FallbackNoDelta, err)
	}
	stats.DeltaBytes = dt.Length
	dpath, dst, err := c.Download(ctx, dt, nil)
	stats.BytesFetched, stats.BytesRefetched, stats.Resumes = dst.BytesFetched, dst.BytesRefetched, dst.Resumes
	if err != nil {
		if ReasonOf(err) == ReasonCanceled {
			return "", stats, err
		}
		return fallback(FallbackDeltaDownload, err)
	}
	// The delta is useful once: remove it whatever happens next.
	defer func() {
		if err := os.Remove(dpath); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.Warn("removing applied delta", "err", err)
		}
	}()
	final, reason, err := c.applyDelta(dpath, installedPath, full)
	if err != nil {
		return fallback(reason, err)
	}
	stats.Delta = true
	if progress != nil {
		progress(full.Length, full.Length)
	}
	log.Info("delta applied and verified", "delta_bytes", dt.Length, "full_bytes", full.Length)
	return final, stats, nil
}

// lookupDelta finds the signed delta target from installedVersion to full
// and checks that its custom metadata names full.
func (c *Client) lookupDelta(full *Target, installedVersion string) (*Target, error) {
	if installedVersion == "" || strings.ContainsAny(installedVersion, "/\\") {
		return nil, newErr(ReasonInvalid, "bad installed version %q", installedVersion)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.up == nil {
		return nil, newErr(ReasonIO, "looking up delta: no trusted metadata (Refresh has not succeeded)")
	}
	p := full.Path + deltaSuffix + installedVersion
	tf, ok := c.up.GetTopLevelTargets()[p]
	if !ok {
		return nil, newErr(ReasonUnsigned, "no signed delta %s", p)
	}
	dt, err := targetFromFile(tf)
	if err != nil {
		return nil, err
	}
	var custom struct {
		Outpost struct {
			DeltaFrom string `json:"delta_from"`
			DeltaFor  string `json:"delta_for"`
		} `json:"outpost"`
	}
	if err := json.Unmarshal(*tf.Custom, &custom); err != nil {
		return nil, newErr(ReasonInvalid, "delta %s: custom metadata: %w", p, err)
	}
	if dt.Meta != full.Meta || custom.Outpost.DeltaFrom != installedVersion || custom.Outpost.DeltaFor != full.Path {
		return nil, newErr(ReasonInvalid, "delta %s: signed metadata %+v from %q for %q does not describe %s from %s",
			p, dt.Meta, custom.Outpost.DeltaFrom, custom.Outpost.DeltaFor, full.Path, installedVersion)
	}
	return dt, nil
}

// applyDelta patches the installed file with the delta at dpath into
// <sha256>.patch, verifies it against full and renames it to the final
// download path. On failure it returns a Fallback reason and removes the
// output.
func (c *Client) applyDelta(dpath, installedPath string, full *Target) (final, reason string, err error) {
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	base, unmap, err := mapFile(installedPath)
	if err != nil {
		return "", FallbackBase, fmt.Errorf("reading installed file: %w", err)
	}
	defer unmap()
	if len(base) == 0 {
		return "", FallbackBase, fmt.Errorf("installed file %s is empty", installedPath)
	}
	df, err := os.Open(dpath)
	if err != nil {
		return "", FallbackIO, err
	}
	defer df.Close()
	final = filepath.Join(c.dlDir, full.SHA256)
	tmp := final + ".patch"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", FallbackIO, fmt.Errorf("creating patch output: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			out.Close()
			os.Remove(tmp)
		}
	}()
	w := bufio.NewWriterSize(out, 64<<10)
	if _, err := otadelta.Decode(bufio.NewReaderSize(df, 64<<10), base, w, full.Length); err != nil {
		switch {
		case errors.Is(err, otadelta.ErrDictionary):
			return "", FallbackBase, err
		case errors.Is(err, otadelta.ErrMalformed), errors.Is(err, otadelta.ErrTooLarge):
			return "", FallbackBadDelta, err
		}
		return "", FallbackIO, err
	}
	if err := w.Flush(); err != nil {
		return "", FallbackIO, fmt.Errorf("writing patch output: %w", err)
	}
	if err := out.Sync(); err != nil {
		return "", FallbackIO, fmt.Errorf("syncing patch output: %w", err)
	}
	if err := out.Close(); err != nil {
		return "", FallbackIO, fmt.Errorf("closing patch output: %w", err)
	}
	if err := verifyFile(tmp, full.File); err != nil {
		return "", FallbackOutput, fmt.Errorf("patched %s does not match its signed length and hashes: %w", full.Path, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", FallbackIO, fmt.Errorf("renaming patch output: %w", err)
	}
	ok = true
	if err := atomicfile.SyncDir(c.dlDir); err != nil {
		return "", FallbackIO, fmt.Errorf("syncing %s: %w", c.dlDir, err)
	}
	return final, "", nil
}
