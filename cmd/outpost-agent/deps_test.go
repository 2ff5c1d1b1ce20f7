package main

import (
	"os/exec"
	"strings"
	"testing"
)

// forbidden are import path prefixes that must never end up in the agent
// binary: they belong to the hub, or would make the agent big.
var forbidden = []string{
	"github.com/outpost-edge/outpost/internal/hub",
	"github.com/outpost-edge/outpost/internal/cli",
	"github.com/gin-gonic/",
	"google.golang.org/grpc",
	"modernc.org/",
	"github.com/jackc/pgx",
	"github.com/lib/pq",
	"github.com/mattn/go-sqlite3",
	"github.com/go-sql-driver/",
	"database/sql",
	"github.com/mochi-mqtt/",
	"github.com/prometheus/client_golang",
	"github.com/spf13/cobra",
	"go.etcd.io/etcd",
}

func TestAgentDependencies(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH")
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed only %d packages: %q", len(deps), out)
	}
	for _, dep := range deps {
		for _, f := range forbidden {
			if dep == strings.TrimSuffix(f, "/") || strings.HasPrefix(dep, f) {
				t.Errorf("outpost-agent depends on %s (forbidden: %s)", dep, f)
			}
		}
	}
}
