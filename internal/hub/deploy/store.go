package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/store"
)

// DocumentStore keeps JSON documents by kind and id (the hub's store).
// Its methods are safe for concurrent use.
type DocumentStore interface {
	CreateDocument(ctx context.Context, kind, id string, doc []byte, active bool, now time.Time) error
	SaveDocument(ctx context.Context, kind, id string, doc []byte, active bool, now time.Time) error
	Document(ctx context.Context, kind, id string) ([]byte, error)
	Documents(ctx context.Context, kind string, activeOnly bool) ([][]byte, error)
	DeleteDocument(ctx context.Context, kind, id string) error
}

// documentKind is the kind of the store's deployment documents.
const documentKind = "deployment"

// docStore reads and writes Deployments as documents. Every deployment is
// saved as active: Step watches complete and failed deployments too, for
// devices that join or leave their selector.
type docStore struct{ ds DocumentStore }

func (d docStore) create(ctx context.Context, dep Deployment) error {
	b, err := json.Marshal(dep)
	if err != nil {
		return err
	}
	if err := d.ds.CreateDocument(ctx, documentKind, dep.Name, b, true, dep.UpdatedAt); err != nil {
		return fmt.Errorf("storing deployment %s: %w", dep.Name, err)
	}
	return nil
}

func (d docStore) save(ctx context.Context, dep Deployment) error {
	b, err := json.Marshal(dep)
	if err != nil {
		return err
	}
	if err := d.ds.SaveDocument(ctx, documentKind, dep.Name, b, true, dep.UpdatedAt); err != nil {
		return fmt.Errorf("saving deployment %s: %w", dep.Name, err)
	}
	return nil
}

func (d docStore) get(ctx context.Context, name string) (Deployment, error) {
	b, err := d.ds.Document(ctx, documentKind, name)
	if errors.Is(err, store.ErrNotFound) {
		return Deployment{}, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return Deployment{}, fmt.Errorf("reading deployment %s: %w", name, err)
	}
	var dep Deployment
	if err := json.Unmarshal(b, &dep); err != nil {
		return Deployment{}, fmt.Errorf("decoding stored deployment %s: %w", name, err)
	}
	return dep, nil
}

func (d docStore) list(ctx context.Context) ([]Deployment, error) {
	docs, err := d.ds.Documents(ctx, documentKind, false)
	if err != nil {
		return nil, fmt.Errorf("listing deployments: %w", err)
	}
	out := make([]Deployment, 0, len(docs))
	for _, b := range docs {
		var dep Deployment
		if err := json.Unmarshal(b, &dep); err != nil {
			return nil, fmt.Errorf("decoding a stored deployment: %w", err)
		}
		out = append(out, dep)
	}
	return out, nil
}

func (d docStore) delete(ctx context.Context, name string) error {
	err := d.ds.DeleteDocument(ctx, documentKind, name)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return fmt.Errorf("deleting deployment %s: %w", name, err)
	}
	return nil
}
