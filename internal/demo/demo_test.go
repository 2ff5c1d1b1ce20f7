package demo

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/store/sqlite"
)

func TestDemoRunsDevicesAndExitsCleanly(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	o := Options{Devices: 2, Duration: 4 * time.Second, DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0"}
	if err := Run(context.Background(), o, &out, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatalf("demo with --duration returned %v, want nil (exit 0)", err)
	}
	for _, want := range []string{"admin password", "outpost login --hub http://127.0.0.1:", "outpost devices ls", "stops by itself"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("banner lacks %q:\n%s", want, out.String())
		}
	}
	m := regexp.MustCompile(`the hub acknowledged (\d+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no summary line:\n%s", out.String())
	}
	acked, _ := strconv.Atoi(m[1])

	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "hub", "outpost.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	total := 0
	for _, id := range []string{"demo-01", "demo-02"} {
		n, err := st.CountPoints(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Errorf("%s stored no points", id)
		}
		total += n
	}
	if total < acked {
		t.Errorf("hub stored %d points but acknowledged %d: acknowledged points were lost", total, acked)
	}
}

func TestDemoOptionsValidate(t *testing.T) {
	err := Options{Devices: 0, Duration: -time.Second}.Validate()
	if err == nil || !strings.Contains(err.Error(), "--devices") || !strings.Contains(err.Error(), "--duration") {
		t.Fatalf("Validate = %v, want both problems", err)
	}
}
