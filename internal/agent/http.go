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
	Queue       int        `json:"queue_batches"`
}

func (a *Agent) serveHealth(w http.ResponseWriter, _ *http.Request) {
	st := a.Stats()
	h := health{Status: "ok", DeviceID: a.cfg.DeviceID, Version: a.opts.Version, Connected: st.Connected, Queue: st.QueueBatches}
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
		{"outpost_agent_points_collected_total", "counter", "Valid points read from sources.", float64(st.PointsCollected)},
		{"outpost_agent_points_invalid_total", "counter", "Points dropped because they break the wire limits.", float64(st.PointsInvalid)},
		{"outpost_agent_source_errors_total", "counter", "Source reads that returned an error.", float64(st.SourceErrors)},
		{"outpost_agent_source_panics_total", "counter", "Source reads that panicked.", float64(st.SourcePanics)},
		{"outpost_agent_batches_created_total", "counter", "Telemetry batches made.", float64(st.BatchesCreated)},
		{"outpost_agent_batches_sent_total", "counter", "Telemetry publish attempts, retries included.", float64(st.BatchesSent)},
		{"outpost_agent_batches_acked_total", "counter", "Telemetry batches the broker accepted.", float64(st.BatchesAcked)},
		{"outpost_agent_points_acked_total", "counter", "Points in batches the broker accepted.", float64(st.PointsAcked)},
		{"outpost_agent_batches_rejected_total", "counter", "Telemetry batches the broker refused; they are not retried.", float64(st.BatchesRejected)},
		{"outpost_agent_batches_dropped_total", "counter", "Telemetry batches dropped because the queue was full.", float64(st.BatchesDropped)},
		{"outpost_agent_points_dropped_total", "counter", "Points in batches dropped because the queue was full.", float64(st.PointsDropped)},
		{"outpost_agent_publish_retries_total", "counter", "Telemetry publishes repeated after a failure.", float64(st.PublishRetries)},
		{"outpost_agent_queue_batches", "gauge", "Telemetry batches waiting to be published.", float64(st.QueueBatches)},
		{"outpost_agent_mqtt_connected", "gauge", "1 while the MQTT connection is up.", b(st.Connected)},
		{"outpost_agent_mqtt_connects_total", "counter", "MQTT connections made.", float64(st.Connects)},
		{"outpost_agent_last_publish_timestamp_seconds", "gauge", "When the broker last accepted a batch (Unix time; 0 = never).", last},
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
