package rollouts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/store"
)

// DocumentStore keeps JSON documents by kind and id (the hub's store).
type DocumentStore interface {
	CreateDocument(ctx context.Context, kind, id string, doc []byte, active bool, now time.Time) error
	SaveDocument(ctx context.Context, kind, id string, doc []byte, active bool, now time.Time) error
	Document(ctx context.Context, kind, id string) ([]byte, error)
	Documents(ctx context.Context, kind string, activeOnly bool) ([][]byte, error)
}

const documentKind = "rollout"

// NewDocumentStore returns a Store keeping each rollout as one JSON
// document in ds.
func NewDocumentStore(ds DocumentStore) Store { return docStore{ds} }

type docStore struct{ ds DocumentStore }

func (d docStore) CreateRollout(ctx context.Context, r Rollout) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	err = d.ds.CreateDocument(ctx, documentKind, r.ID, b, r.Status == Running, r.UpdatedAt)
	if errors.Is(err, store.ErrExists) {
		return fmt.Errorf("%w: %s", ErrExists, r.ID)
	}
	return err
}

func (d docStore) SaveRollout(ctx context.Context, r Rollout) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return d.ds.SaveDocument(ctx, documentKind, r.ID, b, r.Status == Running, r.UpdatedAt)
}

func (d docStore) Rollout(ctx context.Context, id string) (Rollout, error) {
	b, err := d.ds.Document(ctx, documentKind, id)
	if errors.Is(err, store.ErrNotFound) {
		return Rollout{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return Rollout{}, err
	}
	var r Rollout
	if err := json.Unmarshal(b, &r); err != nil {
		return Rollout{}, fmt.Errorf("decoding stored rollout %s: %w", id, err)
	}
	return r, nil
}

func (d docStore) Rollouts(ctx context.Context) ([]Rollout, error) { return d.list(ctx, false) }

// RunningRollouts reads only the rollouts saved as running.
func (d docStore) RunningRollouts(ctx context.Context) ([]Rollout, error) { return d.list(ctx, true) }

func (d docStore) list(ctx context.Context, runningOnly bool) ([]Rollout, error) {
	docs, err := d.ds.Documents(ctx, documentKind, runningOnly)
	if err != nil {
		return nil, err
	}
	out := make([]Rollout, 0, len(docs))
	for _, b := range docs {
		var r Rollout
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("decoding a stored rollout: %w", err)
		}
		out = append(out, r)
	}
	return out, nil
}
