package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/store"
)

// Shadow returns the stored shadow of a device, a deleted one (Deleted set)
// included, or store.ErrNotFound if it never existed.
func (s *Store) Shadow(ctx context.Context, deviceID, name string) (store.Shadow, error) {
	sh := store.Shadow{DeviceID: deviceID, Name: name}
	var deleted, updated int64
	err := s.r.QueryRowContext(ctx,
		"SELECT version, doc, deleted, updated_at FROM shadows WHERE device_id = ? AND name = ?", deviceID, name).
		Scan(&sh.Version, &sh.Doc, &deleted, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return sh, store.ErrNotFound
	}
	if err != nil {
		return sh, fmt.Errorf("reading shadow %s/%q: %w", deviceID, name, err)
	}
	sh.Deleted, sh.UpdatedAt = deleted != 0, msTime(updated)
	return sh, nil
}

// UpdateShadow runs fn on the stored shadow inside a write transaction
// and stores the shadow fn returns (as live, not deleted). found is false
// if the shadow never existed; a deleted one comes with Deleted set and its
// version. Writers are serialized (one writer connection, BEGIN IMMEDIATE),
// so fn always sees the latest version and nothing commits between its read
// and the write: concurrent updates never lose one. The write also
// compares the version fn saw, so an engine without that serialization
// would fail with store.ErrVersionConflict instead of overwriting. An error
// from fn aborts and is returned as is; an unknown device gives
// store.ErrNotFound.
func (s *Store) UpdateShadow(ctx context.Context, deviceID, name string, fn func(cur store.Shadow, found bool) (store.Shadow, error)) (store.Shadow, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return store.Shadow{}, fmt.Errorf("updating shadow %s/%q: %w", deviceID, name, err)
	}
	defer tx.Rollback()
	cur := store.Shadow{DeviceID: deviceID, Name: name}
	var deleted, updated int64
	err = tx.QueryRowContext(ctx,
		"SELECT version, doc, deleted, updated_at FROM shadows WHERE device_id = ? AND name = ?", deviceID, name).
		Scan(&cur.Version, &cur.Doc, &deleted, &updated)
	found := err == nil
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return store.Shadow{}, fmt.Errorf("reading shadow %s/%q: %w", deviceID, name, err)
	default:
		cur.Deleted, cur.UpdatedAt = deleted != 0, msTime(updated)
	}
	next, err := fn(cur, found)
	if err != nil {
		return store.Shadow{}, err
	}
	next.DeviceID, next.Name, next.Deleted = deviceID, name, false
	if next.Version <= cur.Version {
		return store.Shadow{}, fmt.Errorf("updating shadow %s/%q: version %d does not follow %d", deviceID, name, next.Version, cur.Version)
	}
	if !found {
		_, err = tx.ExecContext(ctx,
			"INSERT INTO shadows(device_id, name, version, doc, deleted, updated_at) VALUES (?, ?, ?, ?, 0, ?)",
			deviceID, name, next.Version, next.Doc, next.UpdatedAt.UnixMilli())
		switch {
		case isForeignKeyViolation(err):
			return store.Shadow{}, store.ErrNotFound
		case isUniqueViolation(err):
			return store.Shadow{}, store.ErrVersionConflict
		case err != nil:
			return store.Shadow{}, fmt.Errorf("storing shadow %s/%q: %w", deviceID, name, err)
		}
	} else {
		res, err := tx.ExecContext(ctx,
			"UPDATE shadows SET version = ?, doc = ?, deleted = 0, updated_at = ? WHERE device_id = ? AND name = ? AND version = ?",
			next.Version, next.Doc, next.UpdatedAt.UnixMilli(), deviceID, name, cur.Version)
		if err != nil {
			return store.Shadow{}, fmt.Errorf("storing shadow %s/%q: %w", deviceID, name, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return store.Shadow{}, store.ErrVersionConflict
		}
	}
	if err := tx.Commit(); err != nil {
		return store.Shadow{}, fmt.Errorf("committing shadow %s/%q: %w", deviceID, name, err)
	}
	return next, nil
}

// DeleteShadow turns a shadow into a tombstone that keeps its version and
// returns that version; store.ErrNotFound if there is no live shadow.
func (s *Store) DeleteShadow(ctx context.Context, deviceID, name string, at time.Time) (int64, error) {
	var version int64
	err := s.w.QueryRowContext(ctx,
		"UPDATE shadows SET deleted = 1, doc = x'', updated_at = ? WHERE device_id = ? AND name = ? AND deleted = 0 RETURNING version",
		at.UnixMilli(), deviceID, name).Scan(&version)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, store.ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("deleting shadow %s/%q: %w", deviceID, name, err)
	}
	return version, nil
}
