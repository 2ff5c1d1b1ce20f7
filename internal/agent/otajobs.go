package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/jobs"
	"github.com/outpost-edge/outpost/internal/agent/ota"
	"github.com/outpost-edge/outpost/internal/agent/slots"
	"github.com/outpost-edge/outpost/internal/buildinfo"
)

// Job document types the agent handles.
const (
	jobTypeFile  = "file"
	jobTypeAgent = "agent"
)

// Reason codes of OTA job failures that do not come from package ota or
// slots.
const (
	reasonNotConfigured = "not_configured"
	reasonBadDocument   = "invalid_document"
)

// otaDocument is an OTA job's document.
type otaDocument struct {
	Type     string `json:"type"`
	Artifact struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	} `json:"artifact"`
	AllowDowngrade bool `json:"allow_downgrade,omitempty"`
}

func parseOTADocument(raw json.RawMessage) (otaDocument, error) {
	var d otaDocument
	if err := json.Unmarshal(raw, &d); err != nil {
		return d, reasonError{reasonBadDocument, fmt.Errorf("job document: %w", err)}
	}
	if d.Artifact.Name == "" || d.Artifact.Version == "" {
		return d, reasonError{reasonBadDocument, errors.New("job document: artifact.name and artifact.version are required")}
	}
	return d, nil
}

// reasonError gives an error the reason code the job reports.
type reasonError struct {
	reason string
	err    error
}

func (e reasonError) Error() string  { return e.err.Error() }
func (e reasonError) Unwrap() error  { return e.err }
func (e reasonError) Reason() string { return e.reason }

// withReason wraps an error of package ota or slots with its reason code.
func withReason(err error) error {
	if err == nil {
		return nil
	}
	var oe *ota.Error
	if errors.As(err, &oe) {
		return reasonError{string(oe.Reason), err}
	}
	var se *slots.Error
	if errors.As(err, &se) {
		return reasonError{se.Reason, err}
	}
	return err
}

// platform is this build's artifact platform, e.g. linux-arm64 or
// linux-armv7.
func platform() string { return buildinfo.Platform() }

// jobHandlers are the OTA handlers by job type.
func (a *Agent) jobHandlers() map[string]jobs.Handler {
	h := map[string]jobs.Handler{jobTypeFile: fileHandler{a}}
	if a.cfg.OTA.AgentUpdatesEnabled() {
		h[jobTypeAgent] = agentHandler{a}
	}
	return h
}

// otaClient returns the OTA client, creating it at the first job.
func (a *Agent) otaClient(ctx context.Context) (*ota.Client, error) {
	a.otaMu.Lock()
	defer a.otaMu.Unlock()
	if a.ota != nil {
		return a.ota, nil
	}
	if a.cfg.HubURL == "" {
		return nil, reasonError{reasonNotConfigured, errors.New("hub_url is not set in agent.yaml: updates are downloaded from the hub's HTTP API")}
	}
	var root []byte
	if _, err := os.Stat(filepath.Join(a.opts.DataDir, "ota", "tuf", "root.json")); errors.Is(err, os.ErrNotExist) {
		// The hub had no update keys when this device joined: trust its
		// first root now, over the device's authenticated connection.
		if root, err = a.fetchFirstRoot(ctx); err != nil {
			return nil, reasonError{string(ota.ReasonIO), fmt.Errorf("fetching the hub's first TUF root: %w", err)}
		}
		a.log.Warn("trusting the hub's first TUF root on first use; join after `outpost keys init` to get it at join")
	}
	c, err := ota.New(ota.Config{
		HubURL: a.cfg.HubURL, CoAPURL: a.cfg.OTA.CoAPURL, DeviceID: a.cfg.DeviceID, Password: a.cfg.MQTT.Password,
		DataDir: a.opts.DataDir, TrustedRoot: root, Logger: a.log,
	})
	if err != nil {
		return nil, withReason(err)
	}
	a.ota = c
	return c, nil
}

func (a *Agent) fetchFirstRoot(ctx context.Context) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(a.cfg.HubURL, "/")+"/tuf/metadata/1.root.json", nil)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(a.cfg.DeviceID, a.cfg.MQTT.Password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the hub answered %s (are its update keys initialised? see outpost keys init)", resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 512<<10))
}

// fetch refreshes the metadata, looks the artifact up and downloads it,
// reporting progress. installed, if set, is the version in use and
// installedPath its file: a signed delta from it is used when there is one.
func (a *Agent) fetch(ctx context.Context, d otaDocument, installed, installedPath string, progress func(string, int)) (string, *ota.Target, ota.DownloadStats, error) {
	var stats ota.DownloadStats
	c, err := a.otaClient(ctx)
	if err != nil {
		return "", nil, stats, err
	}
	progress("verifying", 0)
	if err := c.Refresh(ctx); err != nil {
		return "", nil, stats, withReason(err)
	}
	var opts []ota.LookupOption
	if installed != "" {
		opts = append(opts, ota.Installed(installed))
	}
	if d.AllowDowngrade {
		opts = append(opts, ota.AllowDowngrade())
	}
	t, err := c.Lookup(d.Artifact.Name, d.Artifact.Version, platform(), opts...)
	if err != nil {
		return "", nil, stats, withReason(err)
	}
	last := -1
	report := func(done, total int64) {
		if total <= 0 {
			return
		}
		if pct := int(done * 100 / total); pct != last {
			last = pct
			progress("downloading", pct)
		}
	}
	var path string
	if installed != "" && installedPath != "" {
		path, stats, err = c.DownloadDelta(ctx, t, installedPath, installed, report)
	} else {
		path, stats, err = c.Download(ctx, t, report)
	}
	if err != nil {
		return "", nil, stats, withReason(err)
	}
	return path, t, stats, nil
}

func downloadDetails(stats ota.DownloadStats) map[string]string {
	d := map[string]string{
		"bytes_fetched":   strconv.FormatInt(stats.BytesFetched, 10),
		"bytes_refetched": strconv.FormatInt(stats.BytesRefetched, 10),
		"resumes":         strconv.Itoa(stats.Resumes),
	}
	if stats.Delta {
		d["delta"] = "applied"
	} else if stats.FellBack {
		d["delta"] = "fell back: " + stats.FallbackReason
	}
	return d
}

// fileHandler installs artifacts of type file where ota.files says.
type fileHandler struct{ a *Agent }

// Resumable: running the job again resumes the download from its
// checkpoint and installs atomically.
func (fileHandler) Resumable() bool { return true }

func (h fileHandler) Run(ctx context.Context, job jobs.Job, progress func(string, int)) (map[string]string, error) {
	d, err := parseOTADocument(job.Document)
	if err != nil {
		return nil, err
	}
	dest, ok := h.a.cfg.OTA.Files[d.Artifact.Name]
	if !ok {
		return nil, reasonError{reasonNotConfigured, fmt.Errorf("artifact %q is not listed under ota.files in agent.yaml, so this device has nowhere to install it", d.Artifact.Name)}
	}
	c, err := h.a.otaClient(ctx)
	if err != nil {
		return nil, err
	}
	installed, _ := c.InstalledVersion(d.Artifact.Name)
	if installed == d.Artifact.Version {
		if job.Resumed {
			// Installed before the restart; only the report was missing.
			return map[string]string{"stage": "committed", "message": "installed before the restart"}, nil
		}
		// Sent again (a second rollout of the same version): install it
		// again, which also repairs a file changed on the device. Only
		// this exact version is looked up, so no older one can come in.
		d.AllowDowngrade = true
	}
	path, _, stats, err := h.a.fetch(ctx, d, installed, dest.Path, progress)
	if err != nil {
		return nil, err
	}
	progress("installing", 100)
	if err := ota.InstallFile(ctx, path, dest.Path, os.FileMode(dest.FileMode()), dest.PostInstall, dest.Timeout()); err != nil {
		return nil, withReason(err)
	}
	if err := c.MarkInstalled(d.Artifact.Name, d.Artifact.Version); err != nil {
		h.a.log.Error("recording the installed version", "artifact", d.Artifact.Name, "err", err)
	}
	details := downloadDetails(stats)
	details["stage"] = "committed"
	details["path"] = dest.Path
	return details, nil
}

// agentHandler updates the agent itself through its A/B slots: it stages
// the new binary and restarts into it as a trial. The job goes on in the
// trial (or, after a rollback, in the previous version), which reports how
// the trial ended.
type agentHandler struct{ a *Agent }

func (agentHandler) Resumable() bool { return true }

func (h agentHandler) Run(ctx context.Context, job jobs.Job, progress func(string, int)) (map[string]string, error) {
	a := h.a
	d, err := parseOTADocument(job.Document)
	if err != nil {
		return nil, err
	}
	st, err := slots.Status(a.opts.DataDir)
	if err != nil {
		a.log.Warn("reading the update slots' state", "err", err)
	}
	if job.Resumed {
		if res, done := trialOutcome(st, job.ID); done {
			if res.err != nil {
				progress("rolled_back", 100)
			}
			return res.details, res.err
		}
		if st.Trial != nil && st.Trial.JobID == job.ID {
			// This process is the trial (or will be after the restart):
			// wait for the commit; a rollback ends this process.
			progress("restarting", 100)
			return h.awaitCommit(ctx, job.ID, progress)
		}
	}
	if d.Artifact.Version == a.opts.Version && !d.AllowDowngrade {
		return map[string]string{"stage": "committed", "message": "already running " + a.opts.Version}, nil
	}
	self, err := os.Executable()
	if err != nil {
		self = "" // no delta then
	}
	path, _, stats, err := a.fetch(ctx, d, a.opts.Version, self, progress)
	if err != nil {
		return nil, err
	}
	progress("installing", 100)
	if err := slots.Stage(ctx, a.opts.DataDir, path, d.Artifact.Version, slots.StageOptions{Window: a.cfg.OTA.Window(), JobID: job.ID}); err != nil {
		return nil, withReason(err)
	}
	a.log.Info("new agent version staged; restarting into it as a trial", "version", d.Artifact.Version, "job", job.ID,
		"bytes_fetched", stats.BytesFetched, "resumes", stats.Resumes, "delta", stats.Delta)
	progress("restarting", 100)
	// Let the progress report leave before the process ends.
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
	}
	a.requestRestart()
	<-ctx.Done()
	return nil, ctx.Err()
}

type outcome struct {
	details map[string]string
	err     error
}

// trialOutcome reports how the trial of jobID ended, if it has.
func trialOutcome(st slots.State, jobID string) (outcome, bool) {
	r := st.LastResult
	if r == nil || r.JobID != jobID {
		return outcome{}, false
	}
	if r.Outcome == slots.OutcomeCommitted {
		return outcome{details: map[string]string{"stage": "committed", "version": r.Version}}, true
	}
	return outcome{err: reasonError{r.Reason, fmt.Errorf("version %s was rolled back after %d start(s): %s", r.Version, r.Starts, r.Reason)}}, true
}

// awaitCommit waits until the trial of jobID has an outcome.
func (h agentHandler) awaitCommit(ctx context.Context, jobID string, progress func(string, int)) (map[string]string, error) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		st, err := slots.Status(h.a.opts.DataDir)
		if err == nil {
			if res, done := trialOutcome(st, jobID); done {
				if res.err != nil {
					progress("rolled_back", 100)
				}
				return res.details, res.err
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}
