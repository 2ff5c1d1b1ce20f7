package registry_test

import (
	"path/filepath"
	"testing"

	"github.com/outpost-edge/outpost/internal/hub/registry"
	"github.com/outpost-edge/outpost/internal/hub/registry/backendtest"
	"github.com/outpost-edge/outpost/internal/hub/store/sqlite"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestBuiltinBackend(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) registry.Backend {
		st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "outpost.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return registry.NewStoreBackend(st)
	})
}
