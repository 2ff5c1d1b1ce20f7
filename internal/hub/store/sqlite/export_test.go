package sqlite

import "database/sql"

// ReaderStats returns the reader pool's statistics, for tests.
func ReaderStats(s *Store) sql.DBStats { return s.r.Stats() }
