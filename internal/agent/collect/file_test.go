package collect

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFileSource(t *testing.T) {
	path := filepath.Join(t.TempDir(), "temp")
	f, err := NewFile(path, 0.001, -1)
	if err != nil {
		t.Fatal(err)
	}
	read := func() (float64, error) {
		pts, err := f.Collect(context.Background(), time.Now())
		if err != nil {
			return 0, err
		}
		if len(pts) != 1 || pts[0].GetSensor() != "" {
			t.Fatalf("Collect = %v, want one unnamed point", pts)
		}
		return pts[0].GetNum(), nil
	}
	if _, err := read(); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: err = %v", err)
	}
	for _, tt := range []struct {
		content string
		want    float64
		wantErr string
	}{
		{"42000\n", 41, ""},
		{"  43500  ", 42.5, ""},
		{"-2.5e3", -3.5, ""},
		{"", 0, "empty"},
		{"hot", 0, "not a finite number"},
		{"NaN", 0, "not a finite number"},
		{"1 2", 0, "not a finite number"},
		{strings.Repeat("1", MaxFileBytes+1), 0, "larger than"},
	} {
		if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := read()
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("content %.20q: err = %v, want %q", tt.content, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || got != tt.want):
			t.Errorf("content %.20q: got %v, %v; want %v", tt.content, got, err, tt.want)
		}
	}
	if _, err := NewFile("", 1, 0); err == nil {
		t.Error("NewFile without a path = nil error")
	}
	if g, _ := NewFile(path, 0, 0); g.scale != 1 {
		t.Errorf("scale 0 became %v, want 1", g.scale)
	}
}
