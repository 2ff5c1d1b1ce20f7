package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/testutil"
)

// crossTarget is one architecture a release ships the agent for.
type crossTarget struct {
	name   string // as in dist/: linux_NAME
	goarch string
	goarm  string
	qemu   string // qemu-user binary; "" runs natively
}

// crossTargets are the agent's release architectures (Makefile: dist).
var crossTargets = []crossTarget{
	{"amd64", "amd64", "", "qemu-x86_64-static"},
	{"arm64", "arm64", "", "qemu-aarch64-static"},
	{"armv7", "arm", "7", "qemu-arm-static"},
	{"armv6", "arm", "6", "qemu-arm-static"},
	{"riscv64", "riscv64", "", "qemu-riscv64-static"},
}

// TestCrossArchAgents runs the release agent of every architecture, the
// foreign ones under qemu-user: `version` names the architecture, and an
// agent joined with its default simulated sources gets telemetry stored by
// a hub on loopback. With OUTPOST_DIST set (make dist's output directory)
// it tests those binaries; otherwise it builds them as make dist does.
func TestCrossArchAgents(t *testing.T) {
	h := startHub(t)
	dist := os.Getenv("OUTPOST_DIST")
	for _, tg := range crossTargets {
		t.Run(tg.name, func(t *testing.T) {
			var prefix []string
			if tg.goarch != runtime.GOARCH || runtime.GOOS != "linux" {
				prefix = []string{needTool(t, tg.qemu, "qemu-user-static")}
			}
			agent := crossAgent(t, dist, tg)
			cmd := func(args ...string) (string, []string) {
				all := append(append(append([]string{}, prefix...), agent), args...)
				return all[0], all[1:]
			}

			name, args := cmd("version")
			out, _ := run(t, nil, "", true, name, args...)
			arch := "linux/" + tg.name
			if !strings.Contains(out, arch) {
				t.Fatalf("version printed %q, want %s", out, arch)
			}
			if dist != "" && strings.Contains(out, "commit unknown") {
				t.Errorf("release binary does not name its commit: %q", out)
			}

			id := "cross-" + tg.name
			token, _ := h.addDevice(t, id)
			dir := filepath.Join(t.TempDir(), id)
			name, args = cmd("join", "--hub", h.url, "--token", token, "--data", dir)
			run(t, nil, "", true, name, args...)
			a := &agentDir{id: id, dir: dir, metricsAddr: freeAddr(t)}
			a.edit(t, map[string]any{"http": map[string]any{"listen": a.metricsAddr}})
			name, args = cmd("run", "--data", dir)
			p := start(t, nil, name, args...)
			// Emulated, the agent starts in seconds rather than milliseconds.
			testutil.Eventually(t, 90*time.Second, func() error {
				select {
				case err := <-p.done:
					p.done <- err
					t.Fatalf("agent exited (%v):\n%s", err, p.output())
				default:
				}
				if n := len(h.points(t, id)); n < 3 {
					return fmt.Errorf("%d points stored so far", n)
				}
				return nil
			})
			p.stop(t)
		})
	}
}

// crossAgent returns the agent binary for tg: dist's, or a fresh build.
func crossAgent(t *testing.T, dist string, tg crossTarget) string {
	t.Helper()
	if dist != "" {
		p := filepath.Join(dist, "bin", "linux_"+tg.name, "outpost-agent")
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("OUTPOST_DIST=%s has no agent for %s: %v (run make dist)", dist, tg.name, err)
		}
		return p
	}
	out := filepath.Join(t.TempDir(), "outpost-agent")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "./cmd/outpost-agent")
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+tg.goarch, "GOARM="+tg.goarm)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the agent for %s: %v\n%s", tg.name, err, b)
	}
	return out
}
