package deployspec

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportsStayLight checks that the package, which the agent imports,
// depends on nothing outside the standard library but yaml, rollout and
// lazyre.
func TestImportsStayLight(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	allowed := map[string]bool{
		"github.com/outpost-edge/outpost/internal/deployspec": true,
		"github.com/outpost-edge/outpost/internal/rollout":    true,
		"github.com/outpost-edge/outpost/internal/lazyre":     true,
		"go.yaml.in/yaml/v3": true,
	}
	for _, p := range strings.Fields(string(out)) {
		if !allowed[p] {
			t.Errorf("deployspec depends on %s", p)
		}
	}
}
