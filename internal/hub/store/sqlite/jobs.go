package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/store"
)

// pendingStatuses is the SQL list of the statuses that are not final
// (protocol.JobQueued and protocol.JobInProgress).
const pendingStatuses = "('QUEUED', 'IN_PROGRESS')"

const jobCols = "id, document, in_progress_timeout_ms, queued_timeout_ms, rollout, created_at"

const execCols = "job_id, device_id, status, status_details, queued_at, started_at, last_updated_at, version, execution_number"

func scanJob(sc interface{ Scan(...any) error }) (store.Job, error) {
	var (
		j                 store.Job
		inProg, queued, c int64
	)
	if err := sc.Scan(&j.ID, &j.Document, &inProg, &queued, &j.Rollout, &c); err != nil {
		return j, err
	}
	j.InProgressTimeout = time.Duration(inProg) * time.Millisecond
	j.QueuedTimeout = time.Duration(queued) * time.Millisecond
	j.CreatedAt = msTime(c)
	return j, nil
}

func scanExecution(sc interface{ Scan(...any) error }) (store.JobExecution, error) {
	var (
		e                        store.JobExecution
		details                  string
		queued, started, updated int64
	)
	if err := sc.Scan(&e.JobID, &e.DeviceID, &e.Status, &details, &queued, &started, &updated, &e.Version, &e.ExecutionNumber); err != nil {
		return e, err
	}
	if err := json.Unmarshal([]byte(details), &e.StatusDetails); err != nil {
		return e, fmt.Errorf("job execution %s/%s status details: %w", e.JobID, e.DeviceID, err)
	}
	e.QueuedAt, e.StartedAt, e.LastUpdatedAt = msTime(queued), msTime(started), msTime(updated)
	return e, nil
}

// CreateJob stores a job and its executions in one transaction:
// store.ErrExists if the job id is taken, an error matching
// store.ErrNotFound if a target device does not exist (nothing is stored
// then).
func (s *Store) CreateJob(ctx context.Context, j store.Job, execs []store.JobExecution) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("creating job %s: %w", j.ID, err)
	}
	defer tx.Rollback()
	_, err = tx.ExecContext(ctx, "INSERT INTO jobs("+jobCols+") VALUES (?, ?, ?, ?, ?, ?)",
		j.ID, j.Document, j.InProgressTimeout.Milliseconds(), j.QueuedTimeout.Milliseconds(), j.Rollout, j.CreatedAt.UnixMilli())
	switch {
	case isUniqueViolation(err):
		return store.ErrExists
	case err != nil:
		return fmt.Errorf("creating job %s: %w", j.ID, err)
	}
	ins, err := tx.PrepareContext(ctx, "INSERT INTO job_executions("+execCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
	if err != nil {
		return fmt.Errorf("creating job %s: %w", j.ID, err)
	}
	defer ins.Close()
	for _, e := range execs {
		details, err := json.Marshal(nonNil(e.StatusDetails))
		if err != nil {
			return err
		}
		_, err = ins.ExecContext(ctx, j.ID, e.DeviceID, e.Status, string(details), e.QueuedAt.UnixMilli(),
			unixMs(e.StartedAt), e.LastUpdatedAt.UnixMilli(), e.Version, e.ExecutionNumber)
		switch {
		case isForeignKeyViolation(err):
			return fmt.Errorf("device %s: %w", e.DeviceID, store.ErrNotFound)
		case isUniqueViolation(err):
			return fmt.Errorf("device %s listed twice: %w", e.DeviceID, store.ErrExists)
		case err != nil:
			return fmt.Errorf("creating job %s execution on %s: %w", j.ID, e.DeviceID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing job %s: %w", j.ID, err)
	}
	return nil
}

// Job returns one job, or store.ErrNotFound.
func (s *Store) Job(ctx context.Context, id string) (store.Job, error) {
	j, err := scanJob(s.r.QueryRowContext(ctx, "SELECT "+jobCols+" FROM jobs WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return j, store.ErrNotFound
	}
	if err != nil {
		return j, fmt.Errorf("reading job %s: %w", id, err)
	}
	return j, nil
}

// Jobs returns every job, oldest first.
func (s *Store) Jobs(ctx context.Context) ([]store.Job, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT "+jobCols+" FROM jobs ORDER BY created_at, id")
	if err != nil {
		return nil, fmt.Errorf("listing jobs: %w", err)
	}
	defer rows.Close()
	out := []store.Job{}
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, fmt.Errorf("listing jobs: %w", err)
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

func (s *Store) executions(ctx context.Context, what, where string, args ...any) ([]store.JobExecution, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT "+execCols+" FROM job_executions "+where, args...)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", what, err)
	}
	defer rows.Close()
	out := []store.JobExecution{}
	for rows.Next() {
		e, err := scanExecution(rows)
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", what, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing %s: %w", what, err)
	}
	return out, nil
}

// JobExecutions returns a job's executions, sorted by device id.
func (s *Store) JobExecutions(ctx context.Context, jobID string) ([]store.JobExecution, error) {
	return s.executions(ctx, "executions of job "+jobID, "WHERE job_id = ? ORDER BY device_id", jobID)
}

// JobExecution returns one execution, or store.ErrNotFound.
func (s *Store) JobExecution(ctx context.Context, jobID, deviceID string) (store.JobExecution, error) {
	e, err := scanExecution(s.r.QueryRowContext(ctx, "SELECT "+execCols+" FROM job_executions WHERE job_id = ? AND device_id = ?", jobID, deviceID))
	if errors.Is(err, sql.ErrNoRows) {
		return e, store.ErrNotFound
	}
	if err != nil {
		return e, fmt.Errorf("reading job execution %s/%s: %w", jobID, deviceID, err)
	}
	return e, nil
}

// PendingJobExecutions returns a device's executions that are QUEUED or
// IN_PROGRESS, in the order the device is to run them: by queuedAt, then
// by creation.
func (s *Store) PendingJobExecutions(ctx context.Context, deviceID string) ([]store.JobExecution, error) {
	return s.executions(ctx, "pending executions of "+deviceID,
		"WHERE device_id = ? AND status IN "+pendingStatuses+" ORDER BY queued_at, seq", deviceID)
}

// OverdueJobExecutions returns the executions that have been QUEUED longer
// than their job's queued timeout, or IN_PROGRESS longer than its
// in-progress timeout, at now.
func (s *Store) OverdueJobExecutions(ctx context.Context, now time.Time) ([]store.JobExecution, error) {
	const where = `WHERE seq IN (SELECT e.seq FROM job_executions e JOIN jobs j ON j.id = e.job_id
		WHERE (e.status = 'QUEUED' AND j.queued_timeout_ms > 0 AND e.queued_at + j.queued_timeout_ms <= ?1)
		OR (e.status = 'IN_PROGRESS' AND j.in_progress_timeout_ms > 0 AND e.started_at + j.in_progress_timeout_ms <= ?1))
		ORDER BY queued_at, seq`
	return s.executions(ctx, "overdue executions", where, now.UnixMilli())
}

// UpdateJobExecution runs fn on the stored execution inside a write
// transaction and stores what fn returns, which must carry a higher
// version. Writers are serialized (one writer connection, BEGIN
// IMMEDIATE), so fn sees the latest version and nothing commits between
// its read and the write; the write also compares the version fn saw, so
// an engine without that serialization fails with
// store.ErrVersionConflict instead of losing an update. An error from fn
// aborts and is returned as is; a missing execution gives
// store.ErrNotFound.
func (s *Store) UpdateJobExecution(ctx context.Context, jobID, deviceID string, fn func(cur store.JobExecution) (store.JobExecution, error)) (store.JobExecution, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return store.JobExecution{}, fmt.Errorf("updating job execution %s/%s: %w", jobID, deviceID, err)
	}
	defer tx.Rollback()
	cur, err := scanExecution(tx.QueryRowContext(ctx, "SELECT "+execCols+" FROM job_executions WHERE job_id = ? AND device_id = ?", jobID, deviceID))
	if errors.Is(err, sql.ErrNoRows) {
		return store.JobExecution{}, store.ErrNotFound
	}
	if err != nil {
		return store.JobExecution{}, fmt.Errorf("reading job execution %s/%s: %w", jobID, deviceID, err)
	}
	next, err := fn(cur)
	if err != nil {
		return store.JobExecution{}, err
	}
	next.JobID, next.DeviceID = jobID, deviceID
	if next.Version <= cur.Version {
		return store.JobExecution{}, fmt.Errorf("updating job execution %s/%s: version %d does not follow %d", jobID, deviceID, next.Version, cur.Version)
	}
	details, err := json.Marshal(nonNil(next.StatusDetails))
	if err != nil {
		return store.JobExecution{}, err
	}
	res, err := tx.ExecContext(ctx, `UPDATE job_executions SET status = ?, status_details = ?, started_at = ?, last_updated_at = ?,
		version = ?, execution_number = ? WHERE job_id = ? AND device_id = ? AND version = ?`,
		next.Status, string(details), unixMs(next.StartedAt), next.LastUpdatedAt.UnixMilli(), next.Version, next.ExecutionNumber,
		jobID, deviceID, cur.Version)
	if err != nil {
		return store.JobExecution{}, fmt.Errorf("storing job execution %s/%s: %w", jobID, deviceID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.JobExecution{}, store.ErrVersionConflict
	}
	if err := tx.Commit(); err != nil {
		return store.JobExecution{}, fmt.Errorf("committing job execution %s/%s: %w", jobID, deviceID, err)
	}
	return next, nil
}
