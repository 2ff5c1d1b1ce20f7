package shadow

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/outpost-edge/outpost/internal/atomicfile"
)

// FileName is the file in the agent's data directory that holds the last
// applied desired state.
const FileName = "shadow.json"

// State is the last desired state the agent applied, as persisted.
type State struct {
	// Version is the shadow version the desired state came with; 0 when
	// the agent never applied one.
	Version int64 `json:"version"`
	// Desired is the shadow's state.desired, as the hub sent it.
	Desired map[string]any `json:"desired"`
}

// Load reads the state saved at path. A missing file is the zero State,
// not an error.
func Load(path string) (State, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("reading the saved shadow state: %w", err)
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return State{}, fmt.Errorf("reading the saved shadow state %s: %w", path, err)
	}
	return st, nil
}

// Save writes st to path atomically with mode 0600.
func Save(path string, st State) error {
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encoding the shadow state: %w", err)
	}
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("saving the shadow state: %w", err)
	}
	return nil
}
