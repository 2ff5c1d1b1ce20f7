package cli

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRelativeTime(t *testing.T) {
	now := time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)
	tests := []struct {
		ago  time.Duration
		want string
	}{
		{-5 * time.Second, "just now"},
		{0, "just now"},
		{3 * time.Second, "3s ago"},
		{59 * time.Second, "59s ago"},
		{5 * time.Minute, "5m ago"},
		{2 * time.Hour, "2h ago"},
		{47 * time.Hour, "47h ago"},
		{72 * time.Hour, "3d ago"},
	}
	for _, tt := range tests {
		if got := relativeTime(now.Add(-tt.ago), now); got != tt.want {
			t.Errorf("relativeTime(-%v) = %q, want %q", tt.ago, got, tt.want)
		}
	}
	if got := relativeTime(time.Time{}, now); got != "never" {
		t.Errorf("zero time = %q", got)
	}
}

func TestParseLabels(t *testing.T) {
	tests := []struct {
		in      []string
		want    map[string]string
		wantErr string
	}{
		{in: nil},
		{in: []string{"a=b", "c=", "k=v=w"}, want: map[string]string{"a": "b", "c": "", "k": "v=w"}},
		{in: []string{"a"}, wantErr: "want key=value"},
		{in: []string{"=b"}, wantErr: "key is empty"},
		{in: []string{"a=1", "a=2"}, wantErr: "given twice"},
	}
	for _, tt := range tests {
		got, err := parseLabels(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseLabels(%q) err = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || len(got) != len(tt.want) {
			t.Errorf("parseLabels(%q) = %v, %v", tt.in, got, err)
			continue
		}
		for k, v := range tt.want {
			if got[k] != v {
				t.Errorf("parseLabels(%q)[%q] = %q, want %q", tt.in, k, got[k], v)
			}
		}
	}
}

func TestNormalizeHub(t *testing.T) {
	tests := []struct{ in, want, wantErr string }{
		{in: "http://127.0.0.1:8080", want: "http://127.0.0.1:8080"},
		{in: "https://hub.example.com/", want: "https://hub.example.com"},
		{in: "https://hub.example.com/outpost/", want: "https://hub.example.com/outpost"},
		{in: "127.0.0.1:8080", want: "http://127.0.0.1:8080"},
		{in: "", wantErr: "empty"},
		{in: "ftp://x", wantErr: "scheme"},
		{in: "http://", wantErr: "no host"},
		{in: "http://x/?a=b", wantErr: "query"},
	}
	for _, tt := range tests {
		got, err := normalizeHub(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("normalizeHub(%q) err = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("normalizeHub(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestDecodeError(t *testing.T) {
	tests := []struct {
		status int
		body   string
		want   string
	}{
		{404, `{"error":{"code":"not_found","message":"device \"x\" not found"}}`, `hub refused: device "x" not found (not_found)`},
		{401, `{"error":{"code":"unauthorized","message":"token expired"}}`, `hub refused: token expired (unauthorized); run "outpost login"`},
		{502, "<html>\nBad\tgateway\n</html>", "hub refused: HTTP 502 Bad Gateway: <html> Bad gateway </html>"},
		{500, "", "hub refused: HTTP 500 Internal Server Error"},
		{400, `{"error":{"code":"bad_request","message":"line1\nline2\u001b[31m"}}`, "hub refused: line1 line2\uFFFD[31m (bad_request)"},
	}
	for _, tt := range tests {
		resp := &http.Response{StatusCode: tt.status, Body: io.NopCloser(strings.NewReader(tt.body))}
		if got := decodeError(resp).Error(); got != tt.want {
			t.Errorf("decodeError(%d, %q) = %q, want %q", tt.status, tt.body, got, tt.want)
		}
	}
}

func TestWriteTableSanitizes(t *testing.T) {
	var buf bytes.Buffer
	if err := writeTable(&buf, []string{"A", "B"}, [][]string{{"x\ty", "\x1b[2Jz"}}); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(buf.String(), "\t\x1b") {
		t.Errorf("control characters leaked: %q", buf.String())
	}
}

func TestFormatValue(t *testing.T) {
	for in, want := range map[string]string{`21.5`: "21.5", `"on"`: "on", `true`: "true", `null`: "null"} {
		if got := formatValue([]byte(in)); got != want {
			t.Errorf("formatValue(%s) = %q, want %q", in, got, want)
		}
	}
}
