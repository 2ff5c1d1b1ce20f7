// Package promscrape reads a Prometheus text-format endpoint into a flat map
// of samples, for the end-to-end tests and the benchmark harness that watch
// the agent's and the hub's /metrics. Parsing is left to the Prometheus
// library's own text parser.
package promscrape

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// maxBody bounds what Get reads from an endpoint.
const maxBody = 8 << 20

// Get fetches url and returns its samples keyed by metric name, with
// labels, sorted by name, in Prometheus notation: `up`, `rejected_total{code="x"}`.
// Histograms and summaries contribute their _sum and _count.
func Get(ctx context.Context, url string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return Parse(io.LimitReader(resp.Body, maxBody))
}

// Parse reads Prometheus text format from r (see Get).
func Parse(r io.Reader) (map[string]float64, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parsing metrics: %w", err)
	}
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			key := name + labels(m.GetLabel())
			switch {
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			case m.Untyped != nil:
				out[key] = m.GetUntyped().GetValue()
			case m.Histogram != nil:
				out[name+"_sum"+labels(m.GetLabel())] = m.GetHistogram().GetSampleSum()
				out[name+"_count"+labels(m.GetLabel())] = float64(m.GetHistogram().GetSampleCount())
			case m.Summary != nil:
				out[name+"_sum"+labels(m.GetLabel())] = m.GetSummary().GetSampleSum()
				out[name+"_count"+labels(m.GetLabel())] = float64(m.GetSummary().GetSampleCount())
			}
		}
	}
	return out, nil
}

func labels(ls []*dto.LabelPair) string {
	if len(ls) == 0 {
		return ""
	}
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = fmt.Sprintf("%s=%q", l.GetName(), l.GetValue())
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, ",") + "}"
}
