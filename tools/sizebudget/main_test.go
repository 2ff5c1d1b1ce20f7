package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func buildHello(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "hello")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./testdata/hello")
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

func TestOverBudgetFailsAndShowsWhereTheBytesAre(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads ELF symbols of a linux build")
	}
	bin := buildHello(t)
	var out bytes.Buffer
	err := run(context.Background(), []string{"-budget", "100KiB", "-binary", bin, "-pkg", "./testdata/hello", "-goarch", runtime.GOARCH}, &out, &out)
	var over *overBudget
	if !errors.As(err, &over) {
		t.Fatalf("err = %v, want over budget\n%s", err, out.String())
	}
	if over.budget != 100<<10 || over.size <= over.budget {
		t.Errorf("over = %+v", over)
	}
	for _, want := range []string{"OVER", "modules linked", "largest packages", "runtime", "fmt", "largest modules", "(standard library)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestWithinBudgetIsQuiet(t *testing.T) {
	bin := buildHello(t)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-budget", "64MiB", "-binary", bin}, &out, &out); err != nil {
		t.Fatalf("err = %v\n%s", err, out.String())
	}
	if s := out.String(); !strings.Contains(s, "within") || strings.Contains(s, "largest") {
		t.Errorf("output:\n%s", s)
	}
}

func TestBadUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-binary", "x", "-budget", "lots"},
		{"-binary", "x", "-budget", "-1MiB"},
		{"-binary", filepath.Join(t.TempDir(), "missing")},
	} {
		var out bytes.Buffer
		err := run(context.Background(), args, &out, &out)
		var over *overBudget
		if err == nil || errors.As(err, &over) {
			t.Errorf("%q: err = %v, want a usage error", args, err)
		}
	}
}

func TestPackageOf(t *testing.T) {
	for sym, want := range map[string]string{
		"runtime.mallocgc":                           "runtime",
		"github.com/a/b.(*T).M":                      "github.com/a/b",
		"github.com/a/b/c.F.func1":                   "github.com/a/b/c",
		"go.yaml.in/yaml/v3.(*parser).parse":         "go.yaml.in/yaml/v3",
		"slices.Sort[go.shape.[]github.com/x/y.T]":   "slices",
		"type:*github.com/a/b.T":                     "(linker data)",
		"go:string.*":                                "(linker data)",
		"crypto/internal/fips140/drbg.memory":        "crypto/internal/fips140/drbg",
		"google.golang.org/protobuf/internal/impl.X": "google.golang.org/protobuf/internal/impl",
	} {
		if got := packageOf(sym); got != want {
			t.Errorf("packageOf(%q) = %q, want %q", sym, got, want)
		}
	}
}

func TestModuleSizes(t *testing.T) {
	got := moduleSizes(map[string]int64{
		"github.com/a/b":      10,
		"github.com/a/b/c":    5,
		"github.com/a/bc":     7,
		"github.com/a/b/v2/x": 3,
		"runtime":             4,
		"(linker data)":       2,
	}, []string{"github.com/a/b", "github.com/a/b/v2"})
	want := map[string]int64{"github.com/a/b": 15, "github.com/a/b/v2": 3, "(standard library)": 11, "(linker data)": 2}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
}
