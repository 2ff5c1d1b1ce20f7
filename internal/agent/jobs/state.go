package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/outpost-edge/outpost/internal/atomicfile"
	"github.com/outpost-edge/outpost/protocol"
)

// Dir is the directory under the agent's data directory that holds the
// runner's state; FileName is the file, in it, of the execution in hand.
const (
	Dir      = "jobs"
	FileName = "current.json"
)

// maxStateBytes bounds current.json: a job document plus the final
// update's details and the envelope.
const maxStateBytes = protocol.MaxJobsMessageBytes

// record is the execution in hand, as saved in current.json. It is
// written before the runner reports IN_PROGRESS (so a crash always leaves
// it behind while a handler runs) and again with Final before the runner
// reports the outcome; it is removed once the hub has the outcome.
type record struct {
	JobID    string          `json:"jobId"`
	Document json.RawMessage `json:"jobDocument"`
	// Version is the execution's version when the runner took it.
	Version int64 `json:"versionNumber"`
	// Final is the outcome to report; nil while the handler runs (or ran
	// when the agent stopped).
	Final *update `json:"final,omitempty"`
}

// update is a status report for the execution in hand.
type update struct {
	Status  protocol.JobStatus `json:"status"`
	Details map[string]string  `json:"statusDetails,omitempty"`
}

func loadRecord(path string) (*record, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(b) > maxStateBytes {
		return nil, fmt.Errorf("reading %s: %d bytes, more than %d", path, len(b), maxStateBytes)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", path, err)
	}
	if err := protocol.ValidJobID(r.JobID); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", path, err)
	}
	return &r, nil
}

func saveRecord(path string, r *record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding job state: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	return atomicfile.Write(path, b, 0o600)
}

func removeRecord(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return nil
}
