// Package sqlite is the hub's default store engine: one SQLite database file
// in WAL mode, written through a single connection (SQLite has one writer)
// and read through a small pool.
//
// It imports only the store package and the pure-Go modernc.org/sqlite driver,
// so the hub stays a static binary.
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/store"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Store is a SQLite-backed store. It is safe for concurrent use.
type Store struct {
	w *sql.DB // single writer connection
	r *sql.DB // reader pool

	// deviceByID and secretByID are the per-request reads (the REST device
	// lookup, an MQTT connect), prepared once on the reader pool: parsing
	// and planning a SELECT costs several times more than running it.
	// database/sql prepares each on a reader connection the first time it
	// runs there and keeps it while the connection lives.
	deviceByID *sql.Stmt
	secretByID *sql.Stmt

	// insertRows[k] inserts 1<<k telemetry rows in one statement, prepared
	// once on the writer connection: InsertPoints writes a batch in chunks
	// of insertChunk rows and the rest as a sum of smaller powers of two, as
	// one multi-row INSERT costs far less than as many single-row ones.
	insertRows [insertChunkLog + 1]*sql.Stmt

	// seenMu guards seen: the last_seen each device was last given by
	// InsertPoints, so that a device publishing every second does not cost
	// an UPDATE in every commit (see LastSeenResolution).
	seenMu sync.Mutex
	seen   map[string]int64
}

// LastSeenResolution is how far behind a device's newest telemetry its
// last_seen may lag: telemetry moves last_seen only when it advances it by
// at least this much. Connects, disconnects and status messages always
// write it.
const LastSeenResolution = 5 * time.Second

// migrations are applied in order; PRAGMA user_version records how many ran.
var migrations = []string{
	`CREATE TABLE settings (key TEXT PRIMARY KEY, value BLOB NOT NULL);
	CREATE TABLE users (name TEXT PRIMARY KEY, password_hash TEXT NOT NULL, created_at INTEGER NOT NULL);
	CREATE TABLE devices (
		id TEXT PRIMARY KEY,
		labels TEXT NOT NULL DEFAULT '{}',
		created_at INTEGER NOT NULL,
		secret_hash BLOB,
		joined_at INTEGER NOT NULL DEFAULT 0,
		online INTEGER NOT NULL DEFAULT 0,
		last_seen INTEGER NOT NULL DEFAULT 0,
		agent_version TEXT NOT NULL DEFAULT ''
	);
	CREATE TABLE join_tokens (
		hash BLOB PRIMARY KEY,
		device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
		expires_at INTEGER NOT NULL,
		used_at INTEGER NOT NULL DEFAULT 0
	);
	CREATE INDEX join_tokens_by_device ON join_tokens(device_id);
	CREATE TABLE telemetry (
		device_id TEXT NOT NULL,
		seq INTEGER NOT NULL,
		sensor TEXT NOT NULL,
		ts INTEGER NOT NULL,
		kind INTEGER NOT NULL,
		num REAL,
		str TEXT,
		PRIMARY KEY (device_id, seq)
	) WITHOUT ROWID;
	CREATE INDEX telemetry_by_time ON telemetry(device_id, ts);`,
	`ALTER TABLE devices ADD COLUMN spool_points INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE devices ADD COLUMN spool_bytes INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE devices ADD COLUMN spool_dropped INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE devices ADD COLUMN spool_oldest INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE devices ADD COLUMN spool_reported_at INTEGER NOT NULL DEFAULT 0;`,
	`CREATE TABLE shadows (
		device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
		name TEXT NOT NULL,
		version INTEGER NOT NULL,
		doc BLOB NOT NULL,
		deleted INTEGER NOT NULL DEFAULT 0,
		updated_at INTEGER NOT NULL,
		PRIMARY KEY (device_id, name)
	) WITHOUT ROWID;`,
	`CREATE TABLE jobs (
		id TEXT PRIMARY KEY,
		document BLOB NOT NULL,
		in_progress_timeout_ms INTEGER NOT NULL DEFAULT 0,
		queued_timeout_ms INTEGER NOT NULL DEFAULT 0,
		rollout TEXT NOT NULL DEFAULT '',
		created_at INTEGER NOT NULL
	) WITHOUT ROWID;
	CREATE TABLE job_executions (
		seq INTEGER PRIMARY KEY AUTOINCREMENT,
		job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
		device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
		status TEXT NOT NULL,
		status_details TEXT NOT NULL DEFAULT '{}',
		queued_at INTEGER NOT NULL,
		started_at INTEGER NOT NULL DEFAULT 0,
		last_updated_at INTEGER NOT NULL,
		version INTEGER NOT NULL,
		execution_number INTEGER NOT NULL DEFAULT 1,
		UNIQUE (job_id, device_id)
	);
	CREATE INDEX job_executions_pending ON job_executions(device_id, queued_at, seq) WHERE status IN ('QUEUED', 'IN_PROGRESS');
	CREATE INDEX job_executions_active ON job_executions(status) WHERE status IN ('QUEUED', 'IN_PROGRESS');`,
	// Documents are JSON state kept whole by a domain service (rollouts).
	`CREATE TABLE documents (
		kind TEXT NOT NULL,
		id TEXT NOT NULL,
		doc BLOB NOT NULL,
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL,
		PRIMARY KEY (kind, id)
	) WITHOUT ROWID;`,
	// active marks the documents a service still works on (a running
	// rollout), so that its periodic step does not read the finished ones.
	`ALTER TABLE documents ADD COLUMN active INTEGER NOT NULL DEFAULT 1;
	CREATE INDEX documents_active ON documents(kind, created_at, id) WHERE active = 1;`,
}

// Open opens (creating if needed) the database file at path and migrates it.
func Open(ctx context.Context, path string) (*Store, error) {
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "busy_timeout(10000)", "synchronous(FULL)", "foreign_keys(1)"} {
		q.Add("_pragma", p)
	}
	dsn := "file:" + path + "?" + q.Encode()
	w, err := sql.Open("sqlite", dsn+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	r, err := sql.Open("sqlite", dsn)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	// Readers stay open when idle: a reader opened afresh runs the pragmas
	// above and prepares its statements again, which under a burst of
	// concurrent reads would happen on nearly every query if the pool
	// closed what it cannot keep (database/sql keeps 2 idle by default).
	r.SetMaxOpenConns(maxReaders)
	r.SetMaxIdleConns(maxReaders)
	s := &Store{w: w, r: r, seen: make(map[string]int64)}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("migrating %s: %w", path, err)
	}
	if err := s.prepare(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("preparing statements on %s: %w", path, err)
	}
	return s, nil
}

// insertChunk is the most telemetry rows InsertPoints writes in one
// statement, 1<<insertChunkLog; its insertChunk*pointCols parameters stay
// far below SQLite's limit (SQLITE_MAX_VARIABLE_NUMBER, 32766).
const (
	insertChunkLog = 6
	insertChunk    = 1 << insertChunkLog
)

// pointCols is the number of telemetry columns InsertPoints binds per row.
const pointCols = 7

// insertSQL returns the statement that inserts n telemetry rows, skipping
// those whose (device_id, seq) is stored already.
func insertSQL(n int) string {
	var b strings.Builder
	b.WriteString("INSERT OR IGNORE INTO telemetry(device_id, seq, sensor, ts, kind, num, str) VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?)")
	}
	return b.String()
}

// maxReaders is the size of the reader pool.
const maxReaders = 4

// prepare prepares the hot read statements and the telemetry inserts; it
// runs after migrate, as they need the schema.
func (s *Store) prepare(ctx context.Context) (err error) {
	// The writer pool holds one connection, so statements prepared on it
	// stay prepared there, and tx.StmtContext binds them to a transaction
	// without preparing them again.
	for k := range s.insertRows {
		if s.insertRows[k], err = s.w.PrepareContext(ctx, insertSQL(1<<k)); err != nil {
			return err
		}
	}
	if s.deviceByID, err = s.r.PrepareContext(ctx, "SELECT "+deviceCols+" FROM devices WHERE id = ?"); err != nil {
		return err
	}
	s.secretByID, err = s.r.PrepareContext(ctx, "SELECT secret_hash FROM devices WHERE id = ? AND secret_hash IS NOT NULL")
	return err
}

func (s *Store) migrate(ctx context.Context) error {
	var version int
	if err := s.w.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return err
	}
	if version > len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this hub (%d): upgrade the hub", version, len(migrations))
	}
	for i := version; i < len(migrations); i++ {
		tx, err := s.w.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", i+1)); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the database. It is safe to call twice.
func (s *Store) Close() error {
	var errs []error
	for _, st := range append([]*sql.Stmt{s.deviceByID, s.secretByID}, s.insertRows[:]...) {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	return errors.Join(append(errs, s.w.Close(), s.r.Close())...)
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.r.PingContext(ctx)
}

// Setting returns the value stored under key, or store.ErrNotFound.
func (s *Store) Setting(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	err := s.r.QueryRowContext(ctx, "SELECT value FROM settings WHERE key = ?", key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	return v, err
}

// PutSettingIfAbsent stores value under key unless the key exists, and
// returns what is stored under key afterwards.
func (s *Store) PutSettingIfAbsent(ctx context.Context, key string, value []byte) ([]byte, error) {
	if _, err := s.w.ExecContext(ctx, "INSERT OR IGNORE INTO settings(key, value) VALUES (?, ?)", key, value); err != nil {
		return nil, fmt.Errorf("storing setting %s: %w", key, err)
	}
	var v []byte
	err := s.w.QueryRowContext(ctx, "SELECT value FROM settings WHERE key = ?", key).Scan(&v)
	return v, err
}

// CreateUser adds a user; store.ErrExists if the name is taken.
func (s *Store) CreateUser(ctx context.Context, name, passwordHash string, now time.Time) error {
	_, err := s.w.ExecContext(ctx, "INSERT INTO users(name, password_hash, created_at) VALUES (?, ?, ?)", name, passwordHash, now.UnixMilli())
	if isUniqueViolation(err) {
		return store.ErrExists
	}
	return err
}

// SetUserPassword replaces a user's password hash; store.ErrNotFound if the
// user does not exist.
func (s *Store) SetUserPassword(ctx context.Context, name, passwordHash string) error {
	res, err := s.w.ExecContext(ctx, "UPDATE users SET password_hash = ? WHERE name = ?", passwordHash, name)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// UserPasswordHash returns a user's password hash, or store.ErrNotFound.
func (s *Store) UserPasswordHash(ctx context.Context, name string) (string, error) {
	var h string
	err := s.r.QueryRowContext(ctx, "SELECT password_hash FROM users WHERE name = ?", name).Scan(&h)
	if errors.Is(err, sql.ErrNoRows) {
		return "", store.ErrNotFound
	}
	return h, err
}

// CreateDevice adds a device; store.ErrExists if the id is taken.
func (s *Store) CreateDevice(ctx context.Context, d store.Device) error {
	labels, err := json.Marshal(nonNil(d.Labels))
	if err != nil {
		return err
	}
	_, err = s.w.ExecContext(ctx, "INSERT INTO devices(id, labels, created_at) VALUES (?, ?, ?)", d.ID, string(labels), d.CreatedAt.UnixMilli())
	if isUniqueViolation(err) {
		return store.ErrExists
	}
	return err
}

const deviceCols = "id, labels, created_at, joined_at, online, last_seen, agent_version, " +
	"spool_points, spool_bytes, spool_dropped, spool_oldest, spool_reported_at"

func scanDevice(sc interface{ Scan(...any) error }) (store.Device, error) {
	var (
		d                             store.Device
		labels                        string
		created, joined, online, seen int64
		spPoints, spBytes, spDropped  int64
		spOldest, spReported          int64
	)
	if err := sc.Scan(&d.ID, &labels, &created, &joined, &online, &seen, &d.AgentVersion,
		&spPoints, &spBytes, &spDropped, &spOldest, &spReported); err != nil {
		return d, err
	}
	if err := json.Unmarshal([]byte(labels), &d.Labels); err != nil {
		return d, fmt.Errorf("device %s labels: %w", d.ID, err)
	}
	d.CreatedAt = time.UnixMilli(created).UTC()
	d.JoinedAt = msTime(joined)
	d.Online = online != 0
	d.LastSeen = msTime(seen)
	if spReported != 0 {
		d.Spool = &store.SpoolStats{
			Points: uint64(spPoints), Bytes: uint64(spBytes), Dropped: uint64(spDropped),
			Oldest: msTime(spOldest), ReportedAt: msTime(spReported),
		}
	}
	return d, nil
}

// Device returns one device, or store.ErrNotFound.
func (s *Store) Device(ctx context.Context, id string) (store.Device, error) {
	ctx, err := keyLookup(ctx)
	if err != nil {
		return store.Device{}, err
	}
	d, err := scanDevice(s.deviceByID.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return d, store.ErrNotFound
	}
	return d, err
}

// keyLookup returns the context to run a read of one row by primary key
// in: ctx's values without its cancellation, or ctx's error if it is done
// already. Such a read takes microseconds and never waits for the writer
// (WAL), while a cancellable context costs two goroutines per query, one
// in database/sql and one in the driver, to watch for a cancellation that
// cannot arrive in time to matter; on the REST device lookup they cost
// about a tenth of the request's CPU time.
func keyLookup(ctx context.Context) (context.Context, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return context.WithoutCancel(ctx), nil
}

// Devices returns every device, sorted by id.
func (s *Store) Devices(ctx context.Context) ([]store.Device, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT "+deviceCols+" FROM devices ORDER BY id")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// UpdateDeviceLabels replaces a device's labels and returns the device as
// stored afterwards; store.ErrNotFound if the device is unknown.
func (s *Store) UpdateDeviceLabels(ctx context.Context, id string, labels map[string]string) (store.Device, error) {
	b, err := json.Marshal(nonNil(labels))
	if err != nil {
		return store.Device{}, fmt.Errorf("encoding labels of %s: %w", id, err)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return store.Device{}, err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, "UPDATE devices SET labels = ? WHERE id = ?", string(b), id)
	if err != nil {
		return store.Device{}, fmt.Errorf("updating labels of %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.Device{}, store.ErrNotFound
	}
	d, err := scanDevice(tx.QueryRowContext(ctx, "SELECT "+deviceCols+" FROM devices WHERE id = ?", id))
	if err != nil {
		return store.Device{}, fmt.Errorf("reading device %s: %w", id, err)
	}
	return d, tx.Commit()
}

// DeleteDevice removes a device, its join tokens and its telemetry.
func (s *Store) DeleteDevice(ctx context.Context, id string) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, "DELETE FROM devices WHERE id = ?", id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.ErrNotFound
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM telemetry WHERE device_id = ?", id); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	s.seenMu.Lock()
	delete(s.seen, id)
	s.seenMu.Unlock()
	return nil
}

// DeviceSecretHash returns the hash of a device's MQTT secret; store.ErrNotFound
// if the device is unknown or has never joined.
func (s *Store) DeviceSecretHash(ctx context.Context, id string) ([]byte, error) {
	ctx, err := keyLookup(ctx)
	if err != nil {
		return nil, err
	}
	var h []byte
	err = s.secretByID.QueryRowContext(ctx, id).Scan(&h)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	return h, err
}

// AddJoinToken stores a join token hash for a device and revokes the
// device's earlier unused tokens.
func (s *Store) AddJoinToken(ctx context.Context, deviceID string, hash []byte, expires time.Time) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "DELETE FROM join_tokens WHERE device_id = ? AND used_at = 0", deviceID); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO join_tokens(hash, device_id, expires_at) VALUES (?, ?, ?)", hash, deviceID, expires.UnixMilli()); err != nil {
		if isForeignKeyViolation(err) {
			return store.ErrNotFound
		}
		return err
	}
	return tx.Commit()
}

// RedeemJoinToken marks the token with this hash used and sets the device's
// new secret hash, atomically. It returns the device id, or ErrTokenUnknown,
// ErrTokenUsed or ErrTokenExpired.
func (s *Store) RedeemJoinToken(ctx context.Context, hash []byte, now time.Time, secretHash []byte) (string, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return "", err
	}
	defer tx.Rollback()
	var (
		id            string
		expires, used int64
	)
	err = tx.QueryRowContext(ctx, "SELECT device_id, expires_at, used_at FROM join_tokens WHERE hash = ?", hash).Scan(&id, &expires, &used)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", store.ErrTokenUnknown
	case err != nil:
		return "", err
	case used != 0:
		return "", store.ErrTokenUsed
	case now.UnixMilli() >= expires:
		return "", store.ErrTokenExpired
	}
	if _, err := tx.ExecContext(ctx, "UPDATE join_tokens SET used_at = ? WHERE hash = ?", now.UnixMilli(), hash); err != nil {
		return "", err
	}
	if _, err := tx.ExecContext(ctx, "UPDATE devices SET secret_hash = ?, joined_at = ? WHERE id = ?", secretHash, now.UnixMilli(), id); err != nil {
		return "", err
	}
	return id, tx.Commit()
}

// presenceSQL records one presence change; ?4 says whether it carries a
// spool report.
const presenceSQL = `UPDATE devices SET online = ?1, last_seen = MAX(last_seen, ?2),
	agent_version = CASE WHEN ?3 = '' THEN agent_version ELSE ?3 END,
	spool_points = CASE WHEN ?4 THEN ?5 ELSE spool_points END,
	spool_bytes = CASE WHEN ?4 THEN ?6 ELSE spool_bytes END,
	spool_dropped = CASE WHEN ?4 THEN ?7 ELSE spool_dropped END,
	spool_oldest = CASE WHEN ?4 THEN ?8 ELSE spool_oldest END,
	spool_reported_at = CASE WHEN ?4 THEN ?9 ELSE spool_reported_at END
	WHERE id = ?10`

// SetPresence records connects, disconnects and status reports, with the
// spool reports they carry, in one transaction, applied in order.
func (s *Store) SetPresence(ctx context.Context, ps ...store.Presence) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, presenceSQL)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, p := range ps {
		var sp store.SpoolStats
		hasSpool := p.Spool != nil
		if hasSpool {
			sp = *p.Spool
		}
		if _, err := stmt.ExecContext(ctx, boolInt(p.Online), p.At.UnixMilli(), p.AgentVersion, boolInt(hasSpool),
			int64(sp.Points), int64(sp.Bytes), int64(sp.Dropped), unixMs(sp.Oldest), unixMs(sp.ReportedAt), p.DeviceID); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// InsertPoints stores points in one transaction, skipping any whose
// (device, seq) is stored already, and moves each device's last_seen to at
// least seen. It returns how many points were new.
func (s *Store) InsertPoints(ctx context.Context, points []store.Point, seen time.Time) (int, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	inserted := 0
	devices := map[string]struct{}{}
	args := make([]any, 0, min(len(points), insertChunk)*pointCols)
	for rest := points; len(rest) > 0; {
		// Take the largest power of two of rows that fits, up to insertChunk.
		k := insertChunkLog
		for 1<<k > len(rest) {
			k--
		}
		chunk := rest[:1<<k]
		rest = rest[1<<k:]
		args = args[:0]
		for _, p := range chunk {
			var (
				num any
				str any
			)
			switch p.Kind {
			case store.KindNum:
				num = p.Num
			case store.KindStr:
				str = p.Str
			case store.KindFlag:
				num = float64(boolInt(p.Flag))
			default:
				return 0, fmt.Errorf("point %s/%d has no value kind", p.DeviceID, p.Seq)
			}
			args = append(args, p.DeviceID, int64(p.Seq), p.Sensor, p.TS.UnixMilli(), int(p.Kind), num, str)
			devices[p.DeviceID] = struct{}{}
		}
		// RowsAffected of an INSERT OR IGNORE counts the rows it inserted,
		// not those it skipped, also when a chunk repeats a point.
		res, err := tx.StmtContext(ctx, s.insertRows[k]).ExecContext(ctx, args...)
		if err != nil {
			return 0, fmt.Errorf("inserting points %s/%d to %s/%d: %w",
				chunk[0].DeviceID, chunk[0].Seq, chunk[len(chunk)-1].DeviceID, chunk[len(chunk)-1].Seq, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, fmt.Errorf("counting inserted points: %w", err)
		}
		inserted += int(n)
	}
	seenMs := seen.UnixMilli()
	var touched []string
	s.seenMu.Lock()
	for id := range devices {
		if last, ok := s.seen[id]; !ok || seenMs-last >= LastSeenResolution.Milliseconds() {
			touched = append(touched, id)
		}
	}
	s.seenMu.Unlock()
	if len(touched) > 0 {
		upd, err := tx.PrepareContext(ctx, "UPDATE devices SET last_seen = MAX(last_seen, ?) WHERE id = ?")
		if err != nil {
			return 0, err
		}
		defer upd.Close()
		for _, id := range touched {
			if _, err := upd.ExecContext(ctx, seenMs, id); err != nil {
				return 0, err
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("committing %d points: %w", len(points), err)
	}
	s.seenMu.Lock()
	for _, id := range touched {
		if seenMs > s.seen[id] {
			s.seen[id] = seenMs
		}
	}
	s.seenMu.Unlock()
	return inserted, nil
}

// Points returns the points q selects, ordered by timestamp then seq.
func (s *Store) Points(ctx context.Context, q store.PointQuery) ([]store.Point, error) {
	query := "SELECT seq, sensor, ts, kind, num, str FROM telemetry WHERE device_id = ? AND ts >= ? AND ts < ?"
	args := []any{q.DeviceID, q.Since.UnixMilli(), q.Until.UnixMilli()}
	if q.Sensor != "" {
		query += " AND sensor = ?"
		args = append(args, q.Sensor)
	}
	query += " ORDER BY ts, seq LIMIT ?"
	args = append(args, q.Limit)
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []store.Point{}
	for rows.Next() {
		var (
			p    = store.Point{DeviceID: q.DeviceID}
			seq  int64
			ts   int64
			kind int
			num  sql.NullFloat64
			str  sql.NullString
		)
		if err := rows.Scan(&seq, &p.Sensor, &ts, &kind, &num, &str); err != nil {
			return nil, err
		}
		p.Seq, p.TS, p.Kind = uint64(seq), time.UnixMilli(ts).UTC(), store.ValueKind(kind)
		switch p.Kind {
		case store.KindStr:
			p.Str = str.String
		case store.KindFlag:
			p.Flag = num.Float64 != 0
		default:
			p.Num = num.Float64
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// CountPoints returns how many points a device has stored (all time).
func (s *Store) CountPoints(ctx context.Context, deviceID string) (int, error) {
	var n int
	err := s.r.QueryRowContext(ctx, "SELECT COUNT(*) FROM telemetry WHERE device_id = ?", deviceID).Scan(&n)
	return n, err
}

func msTime(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func unixMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func sqliteCode(err error) int {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code()
	}
	return 0
}

func isUniqueViolation(err error) bool {
	c := sqliteCode(err)
	return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

func isForeignKeyViolation(err error) bool {
	return sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
}
