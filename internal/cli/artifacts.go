package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/ota"
	"github.com/spf13/cobra"
)

const pathArtifacts = "/api/v1/artifacts"

// artifact is an Artifact of the REST API.
type artifact struct {
	Name        string  `json:"name"`
	Version     string  `json:"version"`
	Type        string  `json:"type"`
	Platform    string  `json:"platform"`
	Path        string  `json:"path"`
	Length      int64   `json:"length"`
	SHA256      string  `json:"sha256"`
	PublishedAt apiTime `json:"published_at"`
	// DeltaFrom, DeltaFor, FullLength and DeltaPercent are set on delta
	// artifacts.
	DeltaFrom    string  `json:"delta_from"`
	DeltaFor     string  `json:"delta_for"`
	FullLength   int64   `json:"full_length"`
	DeltaPercent float64 `json:"delta_percent"`
}

// deltaColumn describes a delta artifact for the DELTA column: the version
// it patches and its size as a share of the full artifact.
func (a artifact) deltaColumn() string {
	if a.DeltaFrom == "" {
		return ""
	}
	return fmt.Sprintf("from %s: %.1f%% of %d", a.DeltaFrom, a.DeltaPercent, a.FullLength)
}

func newArtifactsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "artifacts",
		Aliases: []string{"artifact"},
		Short:   "Publish and list signed OTA artifacts",
		Long: `artifacts publishes files to the hub's update repository, where they are signed with
The Update Framework (TUF) so devices can verify them, and lists what is published.
Run "outpost keys init" once before the first publish.`,
		Example: `  outpost artifacts publish ./outpost-agent-arm64 --name outpost-agent --version 1.4.0 --type agent --platform linux/arm64
  outpost artifacts ls --name outpost-agent`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newArtifactsPublishCmd(g), newArtifactsListCmd(g))
	return cmd
}

func newArtifactsPublishCmd(g *globals) *cobra.Command {
	var (
		sp        ota.Spec
		deltaFrom string
	)
	cmd := &cobra.Command{
		Use:   "publish FILE --name N --version V --type agent|file|service --platform OS/ARCH|any",
		Short: "Upload a file and sign it as a new artifact",
		Long: `publish uploads FILE to the hub, which hashes it (SHA-256 and SHA-512), stores it and signs
new targets, snapshot and timestamp metadata listing it.

An artifact is identified by name, version and platform. Names are 1–64 characters of
a-z 0-9 . _ -; versions are semantic versions (MAJOR.MINOR.PATCH[-pre]); the platform is
OS/ARCH (linux/arm64, linux/amd64, …) or "any". Publishing the same bytes again is a no-op;
publishing other bytes under an existing name, version and platform is refused: publish a
new version instead. The hub limits the size (512 MiB by default).

--delta-from OLD also publishes a delta: a zstd patch of FILE built with version OLD (same
name and platform, published already) as dictionary, signed as the target
NAME/VERSION/PLATFORM.from-OLD. Devices running OLD download the patch, rebuild FILE and
verify it against the full artifact's signature, and download FILE itself if anything fails.
The full artifact is always published too.`,
		Example: `  outpost artifacts publish ./dist/outpost-agent --name outpost-agent --version 1.4.0 --type agent --platform linux/arm64
  outpost artifacts publish ./pump.yaml --name pump-config --version 2.0.0-rc.1 --type file --platform any
  outpost artifacts publish ./dist/outpost-agent --name outpost-agent --version 1.4.1 --type agent --platform linux/arm64 --delta-from 1.4.0
  outpost artifacts publish ./svc.tar --name vision --version 0.3.1 --type service --platform linux/amd64 -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sp.Platform = ota.NormalizePlatform(sp.Platform)
			if err := sp.Validate(); err != nil {
				return errors.New(strings.TrimPrefix(err.Error(), ota.ErrInvalid.Error()+": "))
			}
			f, err := os.Open(args[0])
			if err != nil {
				return fmt.Errorf("opening artifact: %w", err)
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				return fmt.Errorf("opening artifact: %w", err)
			}
			if !fi.Mode().IsRegular() {
				return fmt.Errorf("%s is not a regular file", args[0])
			}
			t, err := g.target(cmd)
			if err != nil {
				return err
			}
			q := url.Values{"name": {sp.Name}, "version": {sp.Version}, "type": {sp.Type}, "platform": {sp.Platform}}
			if deltaFrom != "" {
				q.Set("delta_from", deltaFrom)
			}
			raw, status, err := upload(cmd.Context(), t, pathArtifacts, q, f, fi.Size())
			if err != nil {
				var ae *apiError
				if errors.As(err, &ae) && ae.Code == "keys_not_initialised" {
					return fmt.Errorf("publishing %s: the hub has no signing keys yet: run \"outpost keys init\" first", sp.TargetPath())
				}
				if errors.As(err, &ae) && ae.Code == "delta_base_not_found" {
					return fmt.Errorf("publishing %s with --delta-from %s: %s is not published for %s; publish it first or drop --delta-from",
						sp.TargetPath(), deltaFrom, deltaFrom, sp.Platform)
				}
				return fmt.Errorf("publishing %s: %w", sp.TargetPath(), err)
			}
			var resp struct {
				Artifact     artifact  `json:"artifact"`
				Delta        *artifact `json:"delta"`
				DeltaSkipped string    `json:"delta_skipped"`
			}
			if err := json.Unmarshal(raw, &resp); err != nil {
				return fmt.Errorf("decoding the hub's answer: %w", err)
			}
			if g.jsonOutput() {
				return writeJSON(g.stdout, raw)
			}
			a := resp.Artifact
			if status == http.StatusOK {
				fmt.Fprintf(g.stdout, "%s is already published with the same content; nothing changed.\n", a.Path)
			} else {
				fmt.Fprintf(g.stdout, "Published %s (%s, %d bytes) and signed new TUF metadata.\n", a.Path, a.Type, a.Length)
			}
			fields := [][2]string{{"sha256", a.SHA256}, {"published", a.PublishedAt.UTC().Format(time.RFC3339)}}
			if d := resp.Delta; d != nil {
				fields = append(fields,
					[2]string{"delta", fmt.Sprintf("%s (%d bytes)", d.Path, d.Length)},
					[2]string{"delta saving", fmt.Sprintf("%.1f%% of the full download (%d of %d bytes), %.1f%% saved", d.DeltaPercent, d.Length, d.FullLength, 100-d.DeltaPercent)})
			}
			if resp.DeltaSkipped != "" {
				fields = append(fields, [2]string{"delta", "none (" + resp.DeltaSkipped + "); devices download the full artifact"})
			}
			return writeFields(g.stdout, fields)
		},
	}
	cmd.Flags().StringVar(&sp.Name, "name", "", "artifact name, 1–64 of a-z 0-9 . _ - (required)")
	cmd.Flags().StringVar(&sp.Version, "version", "", "semantic version MAJOR.MINOR.PATCH[-pre] (required)")
	cmd.Flags().StringVar(&sp.Type, "type", "", "agent, file or service (required)")
	cmd.Flags().StringVar(&sp.Platform, "platform", "", "OS/ARCH such as linux/arm64, or any (required)")
	cmd.Flags().StringVar(&deltaFrom, "delta-from", "", "also publish a delta patch from this published version (same name and platform)")
	for _, f := range []string{"name", "version", "type", "platform"} {
		cmd.MarkFlagRequired(f)
	}
	return cmd
}

// upload streams body to the hub without the client's overall timeout
// (uploads may be large; ctx bounds them) and returns the 2xx body and status.
func upload(ctx context.Context, t target, path string, q url.Values, body io.Reader, size int64) ([]byte, int, error) {
	c := newClient(t.hub, t.token)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path+"?"+q.Encode(), body)
	if err != nil {
		return nil, 0, fmt.Errorf("building request: %w", err)
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "outpost/"+Version)
	req.Header.Set("Authorization", "Bearer "+t.token)
	// The hub checks the name, version and credentials before it reads the
	// body: with 100-continue a refusal arrives as an answer instead of a
	// connection reset halfway through a large upload.
	req.Header.Set("Expect", "100-continue")
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ExpectContinueTimeout = 10 * time.Second
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, 0, ctxErr
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, 0, fmt.Errorf("cannot reach hub at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, resp.StatusCode, decodeError(resp)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err != nil {
		return nil, 0, fmt.Errorf("reading response from hub at %s: %w", c.base, err)
	}
	return data, resp.StatusCode, nil
}

func newArtifactsListCmd(g *globals) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List published artifacts",
		Long: `ls lists the artifacts in the hub's current signed targets metadata, sorted by name, version and platform.
A delta (published with --delta-from) is listed after its full artifact; DELTA shows the version it
patches and its size as a percentage of the full artifact.`,
		Example: `  outpost artifacts ls
  outpost artifacts ls --name outpost-agent
  outpost artifacts ls -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var q url.Values
			if name != "" {
				q = url.Values{"name": {name}}
			}
			var resp struct {
				Artifacts []artifact `json:"artifacts"`
			}
			raw, err := c.doJSON(cmd.Context(), http.MethodGet, pathArtifacts, q, nil, &resp)
			if err != nil {
				return fmt.Errorf("listing artifacts: %w", err)
			}
			if g.jsonOutput() {
				return writeJSON(g.stdout, raw)
			}
			if len(resp.Artifacts) == 0 {
				fmt.Fprintln(g.stdout, "No artifacts published.")
				return nil
			}
			rows := make([][]string, len(resp.Artifacts))
			for i, a := range resp.Artifacts {
				rows[i] = []string{a.Name, a.Version, a.Type, a.Platform, strconv.FormatInt(a.Length, 10), a.deltaColumn(), a.SHA256,
					a.PublishedAt.UTC().Format(time.RFC3339)}
			}
			return writeTable(g.stdout, []string{"NAME", "VERSION", "TYPE", "PLATFORM", "LENGTH", "DELTA", "SHA256", "PUBLISHED"}, rows)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "only artifacts with this name")
	return cmd
}
