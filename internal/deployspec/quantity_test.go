package deployspec

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseCPU(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want CPU
		form string // canonical String()
	}{
		{"200m", 200, "200m"},
		{"1m", 1, "1m"},
		{"0.5", 500, "500m"},
		{".5", 500, "500m"},
		{"1", 1000, "1"},
		{"2.5", 2500, "2500m"},
		{"2000m", 2000, "2"},
		{"0", 0, "0"},
		{"0m", 0, "0"},
		{"0.001", 1, "1m"},
		{"1e1", 10000, "10"},
		{"25e-2", 250, "250m"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseCPU(tc.in)
			if err != nil || got != tc.want {
				t.Fatalf("ParseCPU(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
			if got.String() != tc.form {
				t.Errorf("String() = %q, want %q", got.String(), tc.form)
			}
			if back, err := ParseCPU(got.String()); err != nil || back != got {
				t.Errorf("canonical form %q reads back as %d, %v", got.String(), back, err)
			}
		})
	}
	for _, tc := range []struct{ in, msg string }{
		{"", "empty"},
		{"-1", "negative"},
		{"-200m", "negative"},
		{"0.0001", "finer than 1m"},
		{"0.5m", "finer than 1m"},
		{"200M", "millicores"},
		{"1k", "millicores"},
		{"2 cores", "millicores"},
		{"abc", "not a number"},
		{"m", "not a number"},
		{".", "not a number"},
		{"1.2.3", "millicores"},
		{"1e99", "exponent"},
		{"0x10", "millicores"},
		{"9223372036854775807", "too large"},
		{strings.Repeat("1", 40), "longer than"},
	} {
		t.Run("bad/"+tc.in, func(t *testing.T) {
			got, err := ParseCPU(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("ParseCPU(%q) = %d, %v; want an error containing %q", tc.in, got, err, tc.msg)
			}
		})
	}
}

func TestParseMemory(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Memory
		form string
	}{
		{"64Mi", 64 << 20, "64Mi"},
		{"1Gi", 1 << 30, "1Gi"},
		{"1.5Gi", 1536 << 20, "1536Mi"},
		{"500M", 500e6, "500M"},
		{"128974848", 128974848, "123Mi"},
		{"129e6", 129e6, "129M"},
		{"129E6", 129e6, "129M"},
		{"1E", 1e18, "1E"},
		{"1k", 1000, "1k"},
		{"1Ki", 1024, "1Ki"},
		{"2Ti", 2 << 40, "2Ti"},
		{"1T", 1e12, "1T"},
		{"1G", 1e9, "1G"},
		{"1000", 1000, "1k"},
		{"1001", 1001, "1001"},
		{"0", 0, "0"},
		{"0.5Ki", 512, "512"},
		{"1Pi", 1 << 50, "1Pi"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseMemory(tc.in)
			if err != nil || got != tc.want {
				t.Fatalf("ParseMemory(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
			if got.String() != tc.form {
				t.Errorf("String() = %q, want %q", got.String(), tc.form)
			}
			if back, err := ParseMemory(got.String()); err != nil || back != got {
				t.Errorf("canonical form %q reads back as %d, %v", got.String(), back, err)
			}
		})
	}
	suffixHint := "use Ki, Mi, Gi (binary) or k, M, G"
	for _, tc := range []struct{ in, msg string }{
		{"64MB", `"64MB": ` + suffixHint},
		{"64mi", `"64mi": ` + suffixHint},
		{"64mb", suffixHint},
		{"1K", suffixHint},
		{"1gi", suffixHint},
		{"1GB", suffixHint},
		{"64 Mi", suffixHint},
		{"129m", "thousandths"},
		{"-64Mi", "negative"},
		{"0.5", "whole number of bytes"},
		{"1.0001k", "whole number of bytes"},
		{"1e-1", "whole number of bytes"},
		{"Mi", "not a number"},
		{"", "empty"},
		{"9Ei", "too large"},
		{"1e31", "exponent"},
	} {
		t.Run("bad/"+tc.in, func(t *testing.T) {
			got, err := ParseMemory(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("ParseMemory(%q) = %d, %v; want an error containing %q", tc.in, got, err, tc.msg)
			}
		})
	}
}

func TestQuantityJSON(t *testing.T) {
	var r Resources
	if err := json.Unmarshal([]byte(`{"cpu": 0.25, "memory": "1.5Gi"}`), &r); err != nil {
		t.Fatal(err)
	}
	if r.CPU != 250 || r.Memory != 1536<<20 {
		t.Fatalf("got %+v", r)
	}
	b, _ := json.Marshal(r)
	if string(b) != `{"cpu":"250m","memory":"1536Mi"}` {
		t.Fatalf("Marshal = %s", b)
	}
	if err := json.Unmarshal([]byte(`{"memory": "64MB"}`), &r); err == nil {
		t.Fatal("64MB accepted")
	}
}
