package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Handler returns the local HTTP API: GET /healthz and GET /metrics.
// Run serves it on cfg.HTTP.Listen; an embedding program may mount it
// elsewhere.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", a.serveHealth)
	mux.HandleFunc("GET /metrics", a.serveMetrics)
	return mux
}

// health is the body of /healthz.
type health struct {
	Status      string     `json:"status"`
	DeviceID    string     `json:"device_id"`
	Version     string     `json:"version"`
	Connected   bool       `json:"connected"`
	LastPublish *time.Time `json:"last_publish,omitempty"`
	// SpoolPoints is how many points wait for delivery.
	SpoolPoints int64 `json:"spool_points"`
	// SpoolCorruptFile is set when this run found the spool file corrupt
	// and moved it there.
	SpoolCorruptFile string `json:"spool_corrupt_file,omitempty"`
}

func (a *Agent) serveHealth(w http.ResponseWriter, _ *http.Request) {
	st := a.Stats()
	h := health{Status: "ok", DeviceID: a.cfg.DeviceID, Version: a.opts.Version, Connected: st.Connected,
		SpoolPoints: st.SpoolPoints, SpoolCorruptFile: st.SpoolCorruptFile}
	if !st.LastPublish.IsZero() {
		t := st.LastPublish.UTC()
		h.LastPublish = &t
	}
	code := http.StatusOK
	if !st.Running {
		h.Status, code = "stopped", http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(h)
}

// metric is one line of the exposition.
type metric struct {
	name, kind, help string
	value            float64
}

func (a *Agent) metrics() []metric {
	st := a.Stats()
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	var last float64
	if !st.LastPublish.IsZero() {
		last = float64(st.LastPublish.UnixMilli()) / 1000
	}
	return []metric{
		{"outpost_agent_points_collected_total", "counter", "Points read from sources and stored in the spool.", float64(st.PointsCollected)},
		{"outpost_agent_points_invalid_total", "counter", "Points dropped because they break the wire limits.", float64(st.PointsInvalid)},
		{"outpost_agent_source_errors_total", "counter", "Source reads that returned an error, and failed appends to the spool.", float64(st.SourceErrors)},
		{"outpost_agent_source_panics_total", "counter", "Source reads that panicked.", float64(st.SourcePanics)},
		{"outpost_agent_batches_sent_total", "counter", "Telemetry publish attempts, retries included.", float64(st.BatchesSent)},
		{"outpost_agent_batches_acked_total", "counter", "Telemetry batches the broker accepted.", float64(st.BatchesAcked)},
		{"outpost_agent_points_acked_total", "counter", "Points in batches the broker accepted.", float64(st.PointsAcked)},
		{"outpost_agent_batches_rejected_total", "counter", "Telemetry batches the broker refused; they are deleted, not retried.", float64(st.BatchesRejected)},
		{"outpost_agent_points_rejected_total", "counter", "Points in batches the broker refused.", float64(st.PointsRejected)},
		{"outpost_agent_publish_retries_total", "counter", "Telemetry publishes repeated after a failure on the same connection.", float64(st.PublishRetries)},
		{"outpost_agent_points_backlog_total", "counter", "Acknowledged points that were published as backlog after a (re)connect.", float64(st.PointsBacklog)},
		{"outpost_agent_backlog_draining", "gauge", "1 while a backlog drains at telemetry.drain_rate.", b(st.Draining)},
		{"outpost_agent_mqtt_connected", "gauge", "1 while the MQTT connection is up.", b(st.Connected)},
		{"outpost_agent_mqtt_connects_total", "counter", "MQTT connections made.", float64(st.Connects)},
		{"outpost_agent_last_publish_timestamp_seconds", "gauge", "When the broker last accepted a batch (Unix time; 0 = never).", last},
		{"outpost_agent_spool_points", "gauge", "Points waiting in the spool for delivery.", float64(st.SpoolPoints)},
		{"outpost_agent_spool_bytes", "gauge", "Bytes of spool.max_bytes the waiting points use.", float64(st.SpoolBytes)},
		{"outpost_agent_spool_file_bytes", "gauge", "Size of the spool file.", float64(st.SpoolFileBytes)},
		{"outpost_agent_spool_dropped_total", "counter", "Points the spool dropped undelivered (overflow or max age) since its file was created.", float64(st.SpoolDropped)},
		{"outpost_agent_spool_oldest_age_seconds", "gauge", "How long the oldest waiting point has waited (0 = spool empty).", st.SpoolOldestAge.Seconds()},
		{"outpost_agent_spool_corrupt_resets_total", "counter", "Corrupt spool files moved aside and replaced by an empty spool.", float64(st.SpoolCorruptResets)},
		{"outpost_agent_spool_commits_total", "counter", "Spool write transactions (each one fsync group).", float64(st.SpoolCommits)},
		{"outpost_agent_spool_commit_seconds_total", "counter", "Time spent in spool write transactions, fsync included.", st.SpoolCommitTime.Seconds()},
		{"outpost_agent_spool_next_seq", "gauge", "The sequence number the next stored point gets.", float64(st.NextSeq)},
	}
}

func (a *Agent) serveMetrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	writeMetrics(w, a.opts.Version, a.cfg.DeviceID, a.metrics())
}

// writeMetrics writes the Prometheus text exposition format by hand; the
// agent stays small by not importing the Prometheus client.
func writeMetrics(w io.Writer, version, device string, ms []metric) {
	fmt.Fprintf(w, "# HELP outpost_agent_info Agent version and device id.\n# TYPE outpost_agent_info gauge\n")
	fmt.Fprintf(w, "outpost_agent_info{version=\"%s\",device_id=\"%s\"} 1\n", escapeLabel(version), escapeLabel(device))
	for _, m := range ms {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %v\n", m.name, m.help, m.name, m.kind, m.name, m.value)
	}
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }
