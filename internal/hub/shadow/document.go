package shadow

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"unicode/utf8"

	"github.com/outpost-edge/outpost/protocol"
)

// object is a decoded JSON object. Values are nil, bool, string,
// json.Number, []any or object: everything is decoded with UseNumber so that
// numbers keep their exact text.
type object = map[string]any

// Document is a shadow's stored state: the desired and reported sections
// and their metadata, which mirrors each section with a {"timestamp": s}
// object per leaf (arrays are leaves).
type Document struct {
	Desired      object
	Reported     object
	MetaDesired  object
	MetaReported object
	// Version is the version of the last accepted update; 0 for a shadow
	// that never existed.
	Version int64
}

// storedDoc is the encoding of a Document in the store (the version lives
// in its own column).
type storedDoc struct {
	Desired  object `json:"desired,omitempty"`
	Reported object `json:"reported,omitempty"`
	Metadata struct {
		Desired  object `json:"desired,omitempty"`
		Reported object `json:"reported,omitempty"`
	} `json:"metadata"`
}

func encodeDoc(d Document) ([]byte, error) {
	var s storedDoc
	s.Desired, s.Reported = d.Desired, d.Reported
	s.Metadata.Desired, s.Metadata.Reported = d.MetaDesired, d.MetaReported
	return json.Marshal(s)
}

func decodeDoc(b []byte, version int64) (Document, error) {
	d := Document{Version: version}
	if len(b) == 0 {
		return d, nil
	}
	var s storedDoc
	if err := decodeJSON(b, &s); err != nil {
		return d, fmt.Errorf("decoding stored shadow: %w", err)
	}
	d.Desired, d.Reported = s.Desired, s.Reported
	d.MetaDesired, d.MetaReported = s.Metadata.Desired, s.Metadata.Reported
	return d, nil
}

// decodeJSON decodes exactly one JSON value from b into v, with UseNumber.
func decodeJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}

// Patch is a JSON merge patch for one section of a shadow.
type Patch struct {
	// Present: the request names this section at all.
	Present bool
	// Clear: the section was null, so the whole section goes.
	Clear bool
	// Fields is merged into the section: objects merge key by key, null
	// deletes a key, anything else (arrays included) replaces the value.
	Fields object
}

// Request is a parsed and validated update request.
type Request struct {
	Desired  Patch
	Reported Patch
	// Version, if not nil, is the version the shadow must have for the
	// update to apply.
	Version     *int64
	ClientToken string
}

// state returns the request's state as the client sent it, for the
// update/accepted echo.
func (r Request) state() object {
	st := object{}
	for name, p := range map[string]Patch{"desired": r.Desired, "reported": r.Reported} {
		switch {
		case !p.Present:
		case p.Clear:
			st[name] = nil
		default:
			st[name] = p.Fields
		}
	}
	return st
}

// ParseRequest parses and validates an AWS IoT shadow update request
// ({"state": {"desired": …, "reported": …}, "clientToken": …, "version": …}).
// The returned Request carries the clientToken even when err is not nil
// (once it could be read), so that rejections echo it.
func ParseRequest(payload []byte) (Request, error) {
	var req Request
	if len(payload) > protocol.MaxShadowRequestBytes {
		return req, reject(http.StatusRequestEntityTooLarge, msgTooLarge)
	}
	if !utf8.Valid(payload) {
		return req, reject(http.StatusUnsupportedMediaType, msgEncoding)
	}
	var top object
	if err := decodeJSON(payload, &top); err != nil || top == nil {
		return req, reject(http.StatusBadRequest, msgInvalidJSON)
	}
	if raw, ok := top["clientToken"]; ok {
		tok, isString := raw.(string)
		if !isString || len(tok) > protocol.MaxClientTokenLen {
			return req, reject(http.StatusBadRequest, msgInvalidToken)
		}
		req.ClientToken = tok
	}
	if raw, ok := top["version"]; ok && raw != nil {
		n, isNum := raw.(json.Number)
		v, err := n.Int64()
		if !isNum || err != nil || v < 0 {
			return req, reject(http.StatusBadRequest, msgInvalidVersion)
		}
		req.Version = &v
	}
	rawState, ok := top["state"]
	if !ok {
		return req, reject(http.StatusBadRequest, msgMissingState)
	}
	if rawState == nil {
		// AWS: a null state empties the shadow; the shadow and its
		// version stay.
		req.Desired = Patch{Present: true, Clear: true}
		req.Reported = Patch{Present: true, Clear: true}
		return req, nil
	}
	state, ok := rawState.(object)
	if !ok {
		return req, reject(http.StatusBadRequest, msgStateNotObject)
	}
	for k := range state {
		if k != "desired" && k != "reported" {
			return req, reject(http.StatusBadRequest, "State contains an invalid node: '%s'", k)
		}
	}
	var err error
	if req.Desired, err = parseSection("desired", state); err != nil {
		return req, err
	}
	if req.Reported, err = parseSection("reported", state); err != nil {
		return req, err
	}
	return req, nil
}

func parseSection(name string, state object) (Patch, error) {
	raw, ok := state[name]
	if !ok {
		return Patch{}, nil
	}
	if raw == nil {
		return Patch{Present: true, Clear: true}, nil
	}
	fields, ok := raw.(object)
	if !ok {
		return Patch{}, reject(http.StatusBadRequest, "%s node must be an object", capitalize(name))
	}
	if err := ValidatePatch(fields); err != nil {
		return Patch{}, err
	}
	return Patch{Present: true, Fields: fields}, nil
}

func capitalize(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// ParsePatch parses a merge patch for one section, as the REST API takes
// it: a JSON object, at most protocol.MaxShadowRequestBytes.
func ParsePatch(body []byte) (object, error) {
	if len(body) > protocol.MaxShadowRequestBytes {
		return nil, reject(http.StatusRequestEntityTooLarge, msgTooLarge)
	}
	if !utf8.Valid(body) {
		return nil, reject(http.StatusUnsupportedMediaType, msgEncoding)
	}
	var v any
	if err := decodeJSON(body, &v); err != nil {
		return nil, reject(http.StatusBadRequest, msgInvalidJSON)
	}
	fields, ok := v.(object)
	if !ok {
		return nil, reject(http.StatusBadRequest, "Desired node must be an object")
	}
	if err := ValidatePatch(fields); err != nil {
		return nil, err
	}
	return fields, nil
}

// ValidatePatch checks the rules a section's merge patch must follow: at
// most protocol.MaxShadowDepth levels of nesting and no null inside arrays
// (null means "delete" and only makes sense as an object member).
func ValidatePatch(fields object) error {
	if d := depth(fields); d > protocol.MaxShadowDepth {
		return reject(http.StatusBadRequest, "JSON contains too many levels of nesting; maximum is %d", protocol.MaxShadowDepth)
	}
	if nullInArray(fields, false) {
		return reject(http.StatusBadRequest, "Arrays cannot contain null values")
	}
	return nil
}

// depth is the nesting depth of v: 0 for a scalar, 1 + the deepest member
// for an object or array.
func depth(v any) int {
	d := 0
	switch v := v.(type) {
	case object:
		for _, c := range v {
			d = max(d, depth(c))
		}
	case []any:
		for _, c := range v {
			d = max(d, depth(c))
		}
	default:
		return 0
	}
	return d + 1
}

func nullInArray(v any, inArray bool) bool {
	switch v := v.(type) {
	case nil:
		return inArray
	case object:
		for _, c := range v {
			if nullInArray(c, inArray) {
				return true
			}
		}
	case []any:
		for _, c := range v {
			if nullInArray(c, true) {
				return true
			}
		}
	}
	return false
}

// Apply returns the document after req at time ts (Unix seconds): each
// section's patch merged in, metadata stamped, version incremented. It does
// not check req.Version or the size limit and does not modify d.
func Apply(d Document, req Request, ts int64) Document {
	out := Document{Version: d.Version + 1}
	out.Desired, out.MetaDesired = applySection(d.Desired, d.MetaDesired, req.Desired, ts)
	out.Reported, out.MetaReported = applySection(d.Reported, d.MetaReported, req.Reported, ts)
	return out
}

func applySection(state, meta object, p Patch, ts int64) (object, object) {
	switch {
	case !p.Present:
		return state, meta
	case p.Clear:
		return nil, nil
	}
	state, meta = clone(state), clone(meta)
	if state == nil {
		state = object{}
	}
	if meta == nil {
		meta = object{}
	}
	Merge(state, meta, p.Fields, ts)
	if len(state) == 0 {
		return nil, nil
	}
	return state, meta
}

// Merge applies the merge patch to state and its metadata meta in place,
// stamping every value it sets with ts: null deletes a key, an object
// merges into an object (replacing a non-object), anything else replaces.
// Objects left empty by deletes are removed, and an empty object in the
// patch creates nothing.
func Merge(state, meta, patch object, ts int64) {
	for k, pv := range patch {
		switch pv := pv.(type) {
		case nil:
			delete(state, k)
			delete(meta, k)
		case object:
			sub, ok := state[k].(object)
			subMeta, _ := meta[k].(object)
			if !ok {
				sub, subMeta = object{}, object{} // replaces a scalar or array
			} else if subMeta == nil {
				subMeta = object{}
			}
			Merge(sub, subMeta, pv, ts)
			if len(sub) == 0 {
				delete(state, k)
				delete(meta, k)
				continue
			}
			state[k], meta[k] = sub, subMeta
		default:
			state[k] = pv
			meta[k] = leafMeta(ts)
		}
	}
}

func leafMeta(ts int64) object { return object{"timestamp": ts} }

// RequestMetadata mirrors a patch with a {"timestamp": ts} per leaf,
// deleted (null) leaves included: the metadata of update/accepted.
func RequestMetadata(patch object, ts int64) object {
	out := make(object, len(patch))
	for k, v := range patch {
		if sub, ok := v.(object); ok {
			out[k] = RequestMetadata(sub, ts)
		} else {
			out[k] = leafMeta(ts)
		}
	}
	return out
}

// Delta returns the desired values that differ from reported: keys missing
// from reported, values that differ (arrays compare whole, numbers by
// value), and for objects on both sides only the members that differ. Keys
// only in reported never appear. The result is nil when nothing differs.
func Delta(desired, reported object) object {
	var out object
	for k, dv := range desired {
		rv, ok := reported[k]
		if !ok {
			out = put(out, k, dv)
			continue
		}
		dm, dObj := dv.(object)
		rm, rObj := rv.(object)
		if dObj && rObj {
			if sub := Delta(dm, rm); sub != nil {
				out = put(out, k, sub)
			}
			continue
		}
		if !Equal(dv, rv) {
			out = put(out, k, dv)
		}
	}
	return out
}

func put(m object, k string, v any) object {
	if m == nil {
		m = object{}
	}
	m[k] = v
	return m
}

// DeltaMetadata picks from the desired metadata the entries of the keys in
// delta.
func DeltaMetadata(delta, metaDesired object) object {
	out := make(object, len(delta))
	for k, v := range delta {
		if sub, ok := v.(object); ok {
			m, _ := metaDesired[k].(object)
			out[k] = DeltaMetadata(sub, m)
			continue
		}
		if m, ok := metaDesired[k]; ok {
			out[k] = m
		}
	}
	return out
}

// Equal reports whether two decoded JSON values are equal; numbers compare
// by value (1 equals 1.0).
func Equal(a, b any) bool {
	switch a := a.(type) {
	case nil:
		return b == nil
	case bool:
		bb, ok := b.(bool)
		return ok && a == bb
	case string:
		bs, ok := b.(string)
		return ok && a == bs
	case json.Number, float64:
		return numbersEqual(a, b)
	case []any:
		bl, ok := b.([]any)
		if !ok || len(a) != len(bl) {
			return false
		}
		for i := range a {
			if !Equal(a[i], bl[i]) {
				return false
			}
		}
		return true
	case object:
		bm, ok := b.(object)
		if !ok || len(a) != len(bm) {
			return false
		}
		for k, av := range a {
			bv, ok := bm[k]
			if !ok || !Equal(av, bv) {
				return false
			}
		}
		return true
	}
	return false
}

func numbersEqual(a, b any) bool {
	an, aok := a.(json.Number)
	bn, bok := b.(json.Number)
	if aok && bok {
		if ai, err := an.Int64(); err == nil {
			if bi, err := bn.Int64(); err == nil {
				return ai == bi
			}
		}
	}
	af, aok := toFloat(a)
	bf, bok := toFloat(b)
	return aok && bok && af == bf && !math.IsNaN(af)
}

func toFloat(v any) (float64, bool) {
	switch v := v.(type) {
	case json.Number:
		f, err := v.Float64()
		return f, err == nil
	case float64:
		return v, true
	}
	return 0, false
}

// StateSize is what counts against protocol.MaxShadowStateBytes: the JSON
// encodings of the desired and reported sections (metadata excluded).
func StateSize(d Document) int {
	n := 0
	for _, s := range []object{d.Desired, d.Reported} {
		if len(s) > 0 {
			b, _ := json.Marshal(s)
			n += len(b)
		}
	}
	return n
}

// clone deep-copies the objects of a decoded JSON object; arrays and
// scalars are shared, since nothing modifies them in place.
func clone(m object) object {
	if m == nil {
		return nil
	}
	out := make(object, len(m))
	for k, v := range m {
		if sub, ok := v.(object); ok {
			v = clone(sub)
		}
		out[k] = v
	}
	return out
}

// Full returns the document as get/accepted and the REST API show it:
// state with desired, reported and delta (each only when not empty) and
// metadata for desired and reported.
func Full(d Document, ts int64, clientToken string) protocol.ShadowDocument {
	doc := sections(d)
	if delta := Delta(d.Desired, d.Reported); delta != nil {
		doc.State["delta"] = delta
	}
	doc.Timestamp, doc.ClientToken = ts, clientToken
	return doc
}

// sections returns the document's desired and reported sections and their
// metadata, without delta or timestamp: each half of update/documents.
func sections(d Document) protocol.ShadowDocument {
	doc := protocol.ShadowDocument{State: object{}, Metadata: object{}, Version: d.Version}
	if len(d.Desired) > 0 {
		doc.State["desired"], doc.Metadata["desired"] = d.Desired, d.MetaDesired
	}
	if len(d.Reported) > 0 {
		doc.State["reported"], doc.Metadata["reported"] = d.Reported, d.MetaReported
	}
	return doc
}

// Accepted returns the body of update/accepted for req, which produced a
// document of version: the request's state echoed with its metadata.
func Accepted(req Request, version, ts int64) protocol.ShadowDocument {
	doc := protocol.ShadowDocument{State: req.state(), Metadata: object{}, Version: version, Timestamp: ts, ClientToken: req.ClientToken}
	for name, p := range map[string]Patch{"desired": req.Desired, "reported": req.Reported} {
		switch {
		case !p.Present:
		case p.Clear:
			doc.Metadata[name] = leafMeta(ts)
		default:
			doc.Metadata[name] = RequestMetadata(p.Fields, ts)
		}
	}
	return doc
}
