package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/store"
)

// CreateDocument stores a new JSON document of kind under id; active
// says whether Documents(…, activeOnly) returns it. store.ErrExists if one
// is stored already.
func (s *Store) CreateDocument(ctx context.Context, kind, id string, doc []byte, active bool, now time.Time) error {
	_, err := s.w.ExecContext(ctx, "INSERT INTO documents(kind, id, doc, active, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
		kind, id, doc, boolInt(active), now.UnixMilli(), now.UnixMilli())
	if isUniqueViolation(err) {
		return store.ErrExists
	}
	return err
}

// SaveDocument replaces the document kind/id and its active mark;
// store.ErrNotFound if there is none.
func (s *Store) SaveDocument(ctx context.Context, kind, id string, doc []byte, active bool, now time.Time) error {
	res, err := s.w.ExecContext(ctx, "UPDATE documents SET doc = ?, active = ?, updated_at = ? WHERE kind = ? AND id = ?", doc, boolInt(active), now.UnixMilli(), kind, id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// Document returns the document kind/id; store.ErrNotFound if there is
// none.
func (s *Store) Document(ctx context.Context, kind, id string) ([]byte, error) {
	var doc []byte
	err := s.r.QueryRowContext(ctx, "SELECT doc FROM documents WHERE kind = ? AND id = ?", kind, id).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	return doc, err
}

// Documents returns the documents of kind, oldest first: every one, or
// with activeOnly those last saved as active.
func (s *Store) Documents(ctx context.Context, kind string, activeOnly bool) ([][]byte, error) {
	q := "SELECT doc FROM documents WHERE kind = ? ORDER BY created_at, id"
	if activeOnly {
		q = "SELECT doc FROM documents WHERE kind = ? AND active = 1 ORDER BY created_at, id"
	}
	rows, err := s.r.QueryContext(ctx, q, kind)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var doc []byte
		if err := rows.Scan(&doc); err != nil {
			return nil, err
		}
		out = append(out, doc)
	}
	return out, rows.Err()
}

// DeleteDocument removes the document kind/id; store.ErrNotFound if there
// is none.
func (s *Store) DeleteDocument(ctx context.Context, kind, id string) error {
	res, err := s.w.ExecContext(ctx, "DELETE FROM documents WHERE kind = ? AND id = ?", kind, id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.ErrNotFound
	}
	return nil
}
