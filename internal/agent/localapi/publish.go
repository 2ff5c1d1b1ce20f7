package localapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/protocol"
)

// maxPublishBytes bounds a publish request's body: room for
// protocol.MaxPointsPerBatch points with long string values.
const maxPublishBytes = 4 << 20

// jsonPoint is one point as apps send it.
type jsonPoint struct {
	Sensor string          `json:"sensor"`
	Value  json.RawMessage `json:"value"`
	// TS is RFC 3339 or milliseconds since the Unix epoch; absent: now.
	TS json.RawMessage `json:"ts"`
}

// publishAnswer is the body of a 202.
type publishAnswer struct {
	Accepted int `json:"accepted"`
}

// publish stores the request's points in the spool, all or none: a
// request with any bad point stores nothing.
func (a *API) publish(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r, maxPublishBytes, "body")
	if !ok {
		return
	}
	points, problems := parsePoints(body, a.opts.Now())
	if len(problems) > 0 {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad points; nothing was stored", Problems: problems})
		return
	}
	if err := a.opts.Sink.Append(r.Context(), points); err != nil {
		a.log.Warn("storing published points failed", "points", len(points), "err", err)
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(w, http.StatusAccepted, publishAnswer{Accepted: len(points)})
}

// parsePoints decodes {"points":[…]} or a single point and checks each
// against the telemetry protocol's limits, reporting every problem.
func parsePoints(body []byte, now time.Time) ([]*outpostv1.Point, []string) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(body, &probe); err != nil {
		return nil, []string{`body must be a JSON object: {"points":[…]} or one point: ` + err.Error()}
	}
	var raws []json.RawMessage
	var prefix func(int) string
	if list, ok := probe["points"]; ok {
		if len(probe) != 1 {
			return nil, []string{`body must have only the key "points"`}
		}
		if err := json.Unmarshal(list, &raws); err != nil || raws == nil {
			return nil, []string{"points must be a list of points"}
		}
		prefix = func(i int) string { return fmt.Sprintf("points[%d]", i) }
	} else {
		raws = []json.RawMessage{body}
		prefix = func(int) string { return "point" }
	}
	var problems []string
	if len(raws) == 0 {
		problems = append(problems, "points is empty")
	}
	if len(raws) > protocol.MaxPointsPerBatch {
		return nil, []string{fmt.Sprintf("%d points; at most %d per request", len(raws), protocol.MaxPointsPerBatch)}
	}
	points := make([]*outpostv1.Point, 0, len(raws))
	for i, raw := range raws {
		p, err := parsePoint(raw, now)
		if err != nil {
			problems = append(problems, prefix(i)+": "+err.Error())
			continue
		}
		points = append(points, p)
	}
	return points, problems
}

func parsePoint(raw json.RawMessage, now time.Time) (*outpostv1.Point, error) {
	var jp jsonPoint
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&jp); err != nil {
		return nil, fmt.Errorf("not a point {sensor, value, ts}: %v", err)
	}
	p := &outpostv1.Point{Sensor: jp.Sensor, TsUnixMs: now.UnixMilli()}
	var errs []string
	if err := protocol.ValidSensorName(jp.Sensor); err != nil {
		errs = append(errs, err.Error())
	}
	if err := protocol.SetJSONValue(p, jp.Value); err != nil {
		errs = append(errs, err.Error())
	}
	if len(jp.TS) > 0 && string(jp.TS) != "null" {
		ts, err := protocol.ParseJSONTime(jp.TS)
		if err != nil {
			errs = append(errs, err.Error())
		}
		p.TsUnixMs = ts
	}
	if len(errs) == 0 {
		// The protocol's own check: finite numbers, string length,
		// plausible timestamps.
		b := &outpostv1.TelemetryBatch{SeqFirst: 1, Points: []*outpostv1.Point{p}}
		if err := protocol.ValidateTelemetry(b, now); err != nil {
			errs = append(errs, strings.Replace(err.Error(), "point 0 ("+p.Sensor+"): ", "", 1))
		}
	}
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "; "))
	}
	return p, nil
}
