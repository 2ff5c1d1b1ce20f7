package shadow

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/protocol"
)

// obj decodes a JSON object literal the way the service does (UseNumber);
// "" gives nil.
func obj(t *testing.T, s string) object {
	t.Helper()
	if s == "" {
		return nil
	}
	var o object
	if err := decodeJSON([]byte(s), &o); err != nil {
		t.Fatalf("test JSON %s: %v", s, err)
	}
	return o
}

// canon renders a decoded value as canonical JSON for comparison.
func canon(t *testing.T, v any) string {
	t.Helper()
	if m, ok := v.(object); ok && m == nil {
		return "null"
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// canonStr re-encodes a JSON literal canonically (sorted keys, no spaces).
func canonStr(t *testing.T, s string) string {
	t.Helper()
	if s == "" {
		return "null"
	}
	var v any
	if err := decodeJSON([]byte(s), &v); err != nil {
		t.Fatalf("test JSON %s: %v", s, err)
	}
	return canon(t, v)
}

func TestMerge(t *testing.T) {
	const ts = 200 // new timestamp; existing leaves carry 100
	tests := []struct {
		name      string
		state     string
		meta      string
		patch     string
		wantState string
		wantMeta  string
	}{
		{"add to empty", `{}`, `{}`, `{"a":1}`, `{"a":1}`, `{"a":{"timestamp":200}}`},
		{"nested merge keeps siblings",
			`{"s":{"t":{"interval":"1s","enabled":true}},"x":1}`,
			`{"s":{"t":{"interval":{"timestamp":100},"enabled":{"timestamp":100}}},"x":{"timestamp":100}}`,
			`{"s":{"t":{"interval":"200ms"}}}`,
			`{"s":{"t":{"interval":"200ms","enabled":true}},"x":1}`,
			`{"s":{"t":{"interval":{"timestamp":200},"enabled":{"timestamp":100}}},"x":{"timestamp":100}}`},
		{"null deletes a key", `{"a":1,"b":2}`, `{"a":{"timestamp":100},"b":{"timestamp":100}}`, `{"a":null}`,
			`{"b":2}`, `{"b":{"timestamp":100}}`},
		{"null deleting the last key removes empty parents",
			`{"a":{"b":{"c":1}},"d":1}`,
			`{"a":{"b":{"c":{"timestamp":100}}},"d":{"timestamp":100}}`,
			`{"a":{"b":{"c":null}}}`,
			`{"d":1}`, `{"d":{"timestamp":100}}`},
		{"null on a missing key creates nothing", `{"d":1}`, `{"d":{"timestamp":100}}`, `{"a":{"b":null},"z":null}`,
			`{"d":1}`, `{"d":{"timestamp":100}}`},
		{"arrays replace whole", `{"c":["r","g","b"]}`, `{"c":{"timestamp":100}}`, `{"c":["r"]}`,
			`{"c":["r"]}`, `{"c":{"timestamp":200}}`},
		{"object replaces scalar", `{"a":5}`, `{"a":{"timestamp":100}}`, `{"a":{"b":1}}`,
			`{"a":{"b":1}}`, `{"a":{"b":{"timestamp":200}}}`},
		{"object replaces array", `{"a":[1]}`, `{"a":{"timestamp":100}}`, `{"a":{"b":1}}`,
			`{"a":{"b":1}}`, `{"a":{"b":{"timestamp":200}}}`},
		{"scalar replaces object", `{"a":{"b":1,"c":2}}`, `{"a":{"b":{"timestamp":100},"c":{"timestamp":100}}}`, `{"a":"x"}`,
			`{"a":"x"}`, `{"a":{"timestamp":200}}`},
		{"empty object creates nothing", `{}`, `{}`, `{"a":{}}`, `{}`, `{}`},
		{"empty object leaves an object alone", `{"a":{"b":1}}`, `{"a":{"b":{"timestamp":100}}}`, `{"a":{}}`,
			`{"a":{"b":1}}`, `{"a":{"b":{"timestamp":100}}}`},
		{"same value is stamped again", `{"a":1}`, `{"a":{"timestamp":100}}`, `{"a":1}`, `{"a":1}`, `{"a":{"timestamp":200}}`},
		{"a key named timestamp is data", `{}`, `{}`, `{"timestamp":{"timestamp":5}}`,
			`{"timestamp":{"timestamp":5}}`, `{"timestamp":{"timestamp":{"timestamp":200}}}`},
		{"types are kept", `{}`, `{}`, `{"n":1.50,"s":"1","b":false,"big":12345678901234567890}`,
			`{"n":1.50,"s":"1","b":false,"big":12345678901234567890}`,
			`{"n":{"timestamp":200},"s":{"timestamp":200},"b":{"timestamp":200},"big":{"timestamp":200}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			state, meta, patch := obj(t, tc.state), obj(t, tc.meta), obj(t, tc.patch)
			patchBefore := canon(t, patch)
			Merge(state, meta, patch, ts)
			if got, want := canon(t, state), canonStr(t, tc.wantState); got != want {
				t.Errorf("state = %s, want %s", got, want)
			}
			if got, want := canon(t, meta), canonStr(t, tc.wantMeta); got != want {
				t.Errorf("metadata = %s, want %s", got, want)
			}
			if canon(t, patch) != patchBefore {
				t.Errorf("Merge modified the patch: %s", canon(t, patch))
			}
		})
	}
}

func TestApply(t *testing.T) {
	base := Document{
		Desired: obj(t, `{"a":1}`), MetaDesired: obj(t, `{"a":{"timestamp":100}}`),
		Reported: obj(t, `{"a":2}`), MetaReported: obj(t, `{"a":{"timestamp":100}}`),
		Version: 4,
	}
	tests := []struct {
		name                   string
		req                    string
		wantDesired, wantRepor string
	}{
		{"reported only leaves desired", `{"state":{"reported":{"a":1}}}`, `{"a":1}`, `{"a":1}`},
		{"desired null removes the section", `{"state":{"desired":null,"reported":{"b":true}}}`, ``, `{"a":2,"b":true}`},
		{"state null empties the shadow", `{"state":null}`, ``, ``},
		{"deleting every key removes the section", `{"state":{"desired":{"a":null}}}`, ``, `{"a":2}`},
		{"empty state changes nothing", `{"state":{}}`, `{"a":1}`, `{"a":2}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := ParseRequest([]byte(tc.req))
			if err != nil {
				t.Fatal(err)
			}
			got := Apply(base, req, 200)
			if got.Version != 5 {
				t.Errorf("version = %d, want 5", got.Version)
			}
			if g, w := canon(t, got.Desired), canonStr(t, tc.wantDesired); g != w {
				t.Errorf("desired = %s, want %s", g, w)
			}
			if g, w := canon(t, got.Reported), canonStr(t, tc.wantRepor); g != w {
				t.Errorf("reported = %s, want %s", g, w)
			}
			if (got.Desired == nil) != (got.MetaDesired == nil) || (got.Reported == nil) != (got.MetaReported == nil) {
				t.Errorf("metadata out of step with state: %+v", got)
			}
		})
	}
	if canon(t, base.Desired) != `{"a":1}` || base.Version != 4 {
		t.Errorf("Apply modified its input: %+v", base)
	}
}

func TestDelta(t *testing.T) {
	tests := []struct {
		name, desired, reported, want string // want "" means no delta
	}{
		{"equal", `{"a":1,"b":{"c":"x"}}`, `{"a":1,"b":{"c":"x"}}`, ``},
		{"nothing desired", ``, `{"a":1}`, ``},
		{"nothing reported", `{"a":1,"b":{"c":2}}`, ``, `{"a":1,"b":{"c":2}}`},
		{"key missing from reported", `{"a":1,"b":2}`, `{"a":1}`, `{"b":2}`},
		{"key only in reported is ignored", `{"a":1}`, `{"a":1,"z":9}`, ``},
		{"changed scalar", `{"a":"on"}`, `{"a":"off"}`, `{"a":"on"}`},
		{"nested: only the differing leaf",
			`{"s":{"t":{"interval":"200ms","enabled":true},"h":{"interval":"1s"}}}`,
			`{"s":{"t":{"interval":"1s","enabled":true},"h":{"interval":"1s"}}}`,
			`{"s":{"t":{"interval":"200ms"}}}`},
		{"nested object missing from reported", `{"s":{"t":{"i":1}}}`, `{"s":{}}`, `{"s":{"t":{"i":1}}}`},
		{"type change object vs scalar", `{"a":{"b":1}}`, `{"a":1}`, `{"a":{"b":1}}`},
		{"type change scalar vs object", `{"a":1}`, `{"a":{"b":1}}`, `{"a":1}`},
		{"type change number vs string", `{"a":1}`, `{"a":"1"}`, `{"a":1}`},
		{"type change bool vs string", `{"a":true}`, `{"a":"true"}`, `{"a":true}`},
		{"numbers compare by value", `{"a":1,"b":2.50}`, `{"a":1.0,"b":2.5}`, ``},
		{"large integers compare exactly", `{"a":9007199254740993}`, `{"a":9007199254740992}`, `{"a":9007199254740993}`},
		{"arrays compare whole", `{"a":[1,2],"b":[1,2]}`, `{"a":[2,1],"b":[1,2]}`, `{"a":[1,2]}`},
		{"array vs object", `{"a":[]}`, `{"a":{}}`, `{"a":[]}`},
		{"arrays of objects", `{"a":[{"x":1}]}`, `{"a":[{"x":1}]}`, ``},
		{"null reported is not stored but compares", `{"a":1}`, `{"a":null}`, `{"a":1}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Delta(obj(t, tc.desired), obj(t, tc.reported))
			if tc.want == "" {
				if got != nil {
					t.Errorf("delta = %s, want none", canon(t, got))
				}
				return
			}
			if g, w := canon(t, got), canonStr(t, tc.want); g != w {
				t.Errorf("delta = %s, want %s", g, w)
			}
		})
	}
}

func TestDeltaMetadata(t *testing.T) {
	delta := obj(t, `{"s":{"t":{"interval":"200ms"}},"new":{"x":1,"y":[1]}}`)
	meta := obj(t, `{"s":{"t":{"interval":{"timestamp":7},"enabled":{"timestamp":3}},"h":{"timestamp":3}},
		"new":{"x":{"timestamp":8},"y":{"timestamp":9}},"other":{"timestamp":1}}`)
	want := `{"new":{"x":{"timestamp":8},"y":{"timestamp":9}},"s":{"t":{"interval":{"timestamp":7}}}}`
	if got := canon(t, DeltaMetadata(delta, meta)); got != want {
		t.Errorf("delta metadata = %s, want %s", got, want)
	}
}

func TestRequestMetadataAndAccepted(t *testing.T) {
	req, err := ParseRequest([]byte(`{"state":{"desired":{"a":{"b":1,"c":null},"d":[1]},"reported":null},"clientToken":"tok"}`))
	if err != nil {
		t.Fatal(err)
	}
	got := Accepted(req, 3, 50)
	if got.Version != 3 || got.Timestamp != 50 || got.ClientToken != "tok" {
		t.Errorf("accepted header = %+v", got)
	}
	if g, w := canon(t, got.State), `{"desired":{"a":{"b":1,"c":null},"d":[1]},"reported":null}`; g != w {
		t.Errorf("accepted state = %s, want %s", g, w)
	}
	wantMeta := `{"desired":{"a":{"b":{"timestamp":50},"c":{"timestamp":50}},"d":{"timestamp":50}},"reported":{"timestamp":50}}`
	if g := canon(t, got.Metadata); g != wantMeta {
		t.Errorf("accepted metadata = %s, want %s", g, wantMeta)
	}
}

func TestFull(t *testing.T) {
	d := Document{
		Desired: obj(t, `{"a":1,"b":2}`), MetaDesired: obj(t, `{"a":{"timestamp":1},"b":{"timestamp":2}}`),
		Reported: obj(t, `{"a":1}`), MetaReported: obj(t, `{"a":{"timestamp":3}}`),
		Version: 9,
	}
	got, err := json.Marshal(Full(d, 77, "t1"))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"state":{"delta":{"b":2},"desired":{"a":1,"b":2},"reported":{"a":1}},` +
		`"metadata":{"desired":{"a":{"timestamp":1},"b":{"timestamp":2}},"reported":{"a":{"timestamp":3}}},` +
		`"version":9,"timestamp":77,"clientToken":"t1"}`
	if string(got) != want {
		t.Errorf("full document\n got %s\nwant %s", got, want)
	}
	empty, _ := json.Marshal(Full(Document{Version: 2}, 5, ""))
	if string(empty) != `{"state":{},"metadata":{},"version":2,"timestamp":5}` {
		t.Errorf("empty shadow = %s", empty)
	}
}

// nested returns {"k":{"k":…{"k":1}}} with n objects.
func nested(n int) string {
	return strings.Repeat(`{"k":`, n) + "1" + strings.Repeat("}", n)
}

func TestParseRequest(t *testing.T) {
	long := strings.Repeat("t", protocol.MaxClientTokenLen)
	tests := []struct {
		name      string
		payload   string
		wantCode  int    // 0: accepted
		wantMsg   string // substring of the rejection message
		wantToken string
	}{
		{"desired", `{"state":{"desired":{"a":1}}}`, 0, "", ""},
		{"both sections, token, version", `{"state":{"desired":{"a":1},"reported":{"a":2}},"clientToken":"c-1","version":3}`, 0, "", "c-1"},
		{"token of the longest length", `{"state":{},"clientToken":"` + long + `"}`, 0, "", long},
		{"version null means none", `{"state":{},"version":null}`, 0, "", ""},
		{"unknown top-level fields are ignored", `{"state":{},"metadata":{},"timestamp":5}`, 0, "", ""},
		{"state null", `{"state":null}`, 0, "", ""},
		{"depth at the limit", `{"state":{"desired":` + nested(protocol.MaxShadowDepth) + `}}`, 0, "", ""},
		{"array counts as a level", `{"state":{"desired":{"a":[[[[[1]]]]]}}}`, 0, "", ""},

		{"empty payload", ``, 400, "Invalid JSON", ""},
		{"malformed", `{"state":{"desired":`, 400, "Invalid JSON", ""},
		{"trailing data", `{"state":{}} {}`, 400, "Invalid JSON", ""},
		{"not an object", `[1,2]`, 400, "Invalid JSON", ""},
		{"null document", `null`, 400, "Invalid JSON", ""},
		{"no state", `{"clientToken":"abc"}`, 400, "Missing required node: state", "abc"},
		{"state not an object", `{"state":"on","clientToken":"abc"}`, 400, "State node must be an object", "abc"},
		{"desired not an object", `{"state":{"desired":5}}`, 400, "Desired node must be an object", ""},
		{"reported not an object", `{"state":{"reported":[1]}}`, 400, "Reported node must be an object", ""},
		{"delta in state", `{"state":{"delta":{"a":1}}}`, 400, "State contains an invalid node: 'delta'", ""},
		{"version string", `{"state":{},"version":"3","clientToken":"v"}`, 400, "Invalid version", "v"},
		{"version fraction", `{"state":{},"version":1.5}`, 400, "Invalid version", ""},
		{"version negative", `{"state":{},"version":-1}`, 400, "Invalid version", ""},
		{"token not a string", `{"state":{},"clientToken":5}`, 400, "Invalid clientToken", ""},
		{"token too long", `{"state":{},"clientToken":"` + long + `x"}`, 400, "Invalid clientToken", ""},
		{"too deep", `{"state":{"desired":` + nested(protocol.MaxShadowDepth+1) + `},"clientToken":"d"}`, 400, "too many levels of nesting; maximum is 6", "d"},
		{"too deep with arrays", `{"state":{"reported":{"a":[[[[[[1]]]]]]}}}`, 400, "too many levels", ""},
		{"null in array", `{"state":{"desired":{"a":[1,null]}}}`, 400, "Arrays cannot contain null", ""},
		{"null in object in array", `{"state":{"desired":{"a":[{"b":null}]}}}`, 400, "Arrays cannot contain null", ""},
		{"over the request limit", `{"state":{"desired":{"a":"` + strings.Repeat("x", protocol.MaxShadowRequestBytes) + `"}}}`, 413, "exceeds the maximum size", ""},
		{"not UTF-8", "{\"state\":{\"desired\":{\"a\":\"\xff\"}}}", 415, "UTF-8", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := ParseRequest([]byte(tc.payload))
			if req.ClientToken != tc.wantToken {
				t.Errorf("clientToken = %q, want %q", req.ClientToken, tc.wantToken)
			}
			if tc.wantCode == 0 {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			var r *Rejection
			if !errors.As(err, &r) {
				t.Fatalf("err = %v, want a Rejection", err)
			}
			if r.Code != tc.wantCode || !strings.Contains(r.Message, tc.wantMsg) {
				t.Errorf("rejection = %d %q, want %d containing %q", r.Code, r.Message, tc.wantCode, tc.wantMsg)
			}
		})
	}
}

func TestParseRequestSections(t *testing.T) {
	req, err := ParseRequest([]byte(`{"state":{"desired":null,"reported":{"a":{"b":null}}},"version":7}`))
	if err != nil {
		t.Fatal(err)
	}
	if !req.Desired.Present || !req.Desired.Clear {
		t.Errorf("desired = %+v, want present and cleared", req.Desired)
	}
	if !req.Reported.Present || req.Reported.Clear || canon(t, req.Reported.Fields) != `{"a":{"b":null}}` {
		t.Errorf("reported = %+v", req.Reported)
	}
	if req.Version == nil || *req.Version != 7 {
		t.Errorf("version = %v, want 7", req.Version)
	}
	req, _ = ParseRequest([]byte(`{"state":{"reported":{}}}`))
	if req.Desired.Present {
		t.Errorf("desired present although the request has none: %+v", req.Desired)
	}
}

func TestParsePatch(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		wantCode int
	}{
		{"object", `{"sources":{"temperature":{"interval":"200ms"}}}`, 0},
		{"delete", `{"a":null}`, 0},
		{"array", `[1]`, http.StatusBadRequest},
		{"scalar", `5`, http.StatusBadRequest},
		{"malformed", `{"a":`, http.StatusBadRequest},
		{"too deep", nested(protocol.MaxShadowDepth + 1), http.StatusBadRequest},
		{"too large", `{"a":"` + strings.Repeat("x", protocol.MaxShadowRequestBytes) + `"}`, http.StatusRequestEntityTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePatch([]byte(tc.body))
			code, _ := codeOf(err)
			if err == nil {
				code = 0
			}
			if code != tc.wantCode {
				t.Errorf("code = %d (%v), want %d", code, err, tc.wantCode)
			}
		})
	}
}

func TestStateSize(t *testing.T) {
	d := Document{Desired: obj(t, `{"a":1}`), Reported: obj(t, `{"bb":"x"}`), MetaDesired: obj(t, `{"a":{"timestamp":1}}`)}
	if got := StateSize(d); got != len(`{"a":1}`)+len(`{"bb":"x"}`) {
		t.Errorf("StateSize = %d", got)
	}
	if got := StateSize(Document{}); got != 0 {
		t.Errorf("StateSize(empty) = %d", got)
	}
}

func TestEqual(t *testing.T) {
	n := func(s string) json.Number { return json.Number(s) }
	tests := []struct {
		a, b any
		want bool
	}{
		{n("1"), n("1.0"), true},
		{n("1e2"), n("100"), true},
		{n("1"), 1.0, true},
		{n("1"), "1", false},
		{nil, nil, true},
		{nil, false, false},
		{[]any{n("1")}, []any{n("1"), n("2")}, false},
		{object{"a": n("1")}, object{"a": n("1"), "b": nil}, false},
		{object{"a": []any{"x"}}, object{"a": []any{"x"}}, true},
	}
	for _, tc := range tests {
		if got := Equal(tc.a, tc.b); got != tc.want {
			t.Errorf("Equal(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestStoredDocumentRoundTrip(t *testing.T) {
	d := Document{
		Desired: obj(t, `{"a":1.50,"b":{"c":[1,"x"]}}`), MetaDesired: obj(t, `{"a":{"timestamp":1},"b":{"c":{"timestamp":2}}}`),
		Reported: obj(t, `{"z":true}`), MetaReported: obj(t, `{"z":{"timestamp":3}}`),
		Version: 12,
	}
	b, err := encodeDoc(d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeDoc(b, 12)
	if err != nil {
		t.Fatal(err)
	}
	a1, _ := json.Marshal(Full(d, 1, ""))
	a2, _ := json.Marshal(Full(got, 1, ""))
	if !bytes.Equal(a1, a2) || !bytes.Contains(a2, []byte("1.50")) {
		t.Errorf("round trip changed the document:\n%s\n%s", a1, a2)
	}
}
