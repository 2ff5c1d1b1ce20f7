package shadow

import (
	"maps"
	"reflect"
	"strings"
)

// Reported returns the state.reported document for the settings and the
// outcome of Resolve: every setting the shadow can change, in the shape of
// desired (with desired's own spelling where desired set the key), the
// version applied under KeyVersion and the refused keys under KeyErrors.
func Reported(res Result, version int64) map[string]any {
	s := res.Settings
	sources := make(map[string]any, len(s.Sources))
	for name, src := range s.Sources {
		sources[name] = map[string]any{
			"interval": src.Interval.String(),
			"enabled":  src.Enabled,
			"report":   reportDoc(src),
		}
	}
	out := map[string]any{
		"log_level": strings.ToLower(s.LogLevel.String()),
		"telemetry": map[string]any{"qos": float64(s.QoS)},
		"spool": map[string]any{
			"max_bytes": s.SpoolMaxBytes.String(),
			"max_age":   s.SpoolMaxAge.String(),
			"overflow":  s.SpoolOverflow,
		},
		"sources":  sources,
		KeyVersion: float64(version),
	}
	for key, raw := range res.Applied {
		setPath(out, strings.Split(key, "."), raw)
	}
	if len(res.Errors) > 0 {
		errs := make(map[string]any, len(res.Errors))
		for k, v := range res.Errors {
			errs[k] = v
		}
		out[KeyErrors] = errs
	}
	return out
}

func reportDoc(src *SourceSettings) map[string]any {
	r := src.Report
	m := map[string]any{"strategy": r.Strategy}
	switch r.Strategy {
	case "batch":
		m["max_points"] = float64(r.MaxPoints)
		m["max_delay"] = r.MaxDelay.String()
	case "on_change":
		m["deadband"] = r.Deadband
		m["deadband_percent"] = r.DeadbandPercent
		m["max_interval"] = r.MaxInterval.String()
	}
	return m
}

// setPath sets doc[path...] = v where the objects along path exist; a
// source name never contains a dot, so the dotted keys split cleanly.
func setPath(doc map[string]any, path []string, v any) {
	for i, p := range path {
		if i == len(path)-1 {
			if _, ok := doc[p]; ok {
				doc[p] = v
			}
			return
		}
		next, ok := doc[p].(map[string]any)
		if !ok {
			return
		}
		doc = next
	}
}

// MergePatch returns the shadow update that turns old into new under the
// shadow's merge rules: members of new that differ, and null for members
// of old that new lacks. It returns an empty map when they are equal.
func MergePatch(old, new map[string]any) map[string]any {
	out := map[string]any{}
	for k := range old {
		if _, ok := new[k]; !ok {
			out[k] = nil
		}
	}
	for k, nv := range new {
		ov, had := old[k]
		om, oIsMap := ov.(map[string]any)
		nm, nIsMap := nv.(map[string]any)
		switch {
		case had && oIsMap && nIsMap:
			if p := MergePatch(om, nm); len(p) > 0 {
				out[k] = p
			}
		case had && reflect.DeepEqual(ov, nv):
		default:
			out[k] = cloneValue(nv)
		}
	}
	return out
}

// Merge applies patch to doc in place under the shadow's merge rules and
// returns doc (a new map when doc is nil).
func Merge(doc, patch map[string]any) map[string]any {
	if doc == nil {
		doc = map[string]any{}
	}
	for k, pv := range patch {
		if pv == nil {
			delete(doc, k)
			continue
		}
		pm, pIsMap := pv.(map[string]any)
		dm, dIsMap := doc[k].(map[string]any)
		switch {
		case pIsMap && dIsMap:
			doc[k] = Merge(dm, pm)
			if len(doc[k].(map[string]any)) == 0 {
				delete(doc, k)
			}
		case pIsMap:
			if m := Merge(nil, pm); len(m) > 0 {
				doc[k] = m
			}
		default:
			doc[k] = cloneValue(pv)
		}
	}
	return doc
}

func cloneValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := maps.Clone(x)
		for k, vv := range m {
			m[k] = cloneValue(vv)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, vv := range x {
			s[i] = cloneValue(vv)
		}
		return s
	default:
		return v
	}
}
