package sqlite_test

import (
	"errors"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/store"
	"github.com/outpost-edge/outpost/internal/hub/store/sqlite"
)

func queued(dev string, at time.Time) store.JobExecution {
	return store.JobExecution{DeviceID: dev, Status: "QUEUED", QueuedAt: at, LastUpdatedAt: at, Version: 1, ExecutionNumber: 1}
}

func mustCreateJob(t *testing.T, s *sqlite.Store, j store.Job, devs ...string) {
	t.Helper()
	var execs []store.JobExecution
	for _, d := range devs {
		execs = append(execs, queued(d, j.CreatedAt))
	}
	if err := s.CreateJob(t.Context(), j, execs); err != nil {
		t.Fatalf("CreateJob(%s): %v", j.ID, err)
	}
}

func TestJobsCreateAndRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outpost.db")
	s := openAt(t, path)
	ctx := t.Context()
	mustCreateDevice(t, s, "a", nil)
	mustCreateDevice(t, s, "b", nil)
	j := store.Job{ID: "j1", Document: []byte(`{"type":"file"}`), InProgressTimeout: time.Minute, QueuedTimeout: time.Hour, Rollout: "r1", CreatedAt: t0}
	mustCreateJob(t, s, j, "b", "a")

	if err := s.CreateJob(ctx, j, nil); !errors.Is(err, store.ErrExists) {
		t.Fatalf("CreateJob twice: %v, want ErrExists", err)
	}
	j2 := store.Job{ID: "j2", Document: []byte(`{}`), CreatedAt: t0}
	if err := s.CreateJob(ctx, j2, []store.JobExecution{queued("a", t0), queued("ghost", t0)}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("CreateJob on an unknown device: %v, want ErrNotFound", err)
	}
	if _, err := s.Job(ctx, "j2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a failed CreateJob left job j2: %v", err)
	}

	got, err := s.Job(ctx, "j1")
	if err != nil || got.ID != "j1" || string(got.Document) != `{"type":"file"}` || got.InProgressTimeout != time.Minute ||
		got.QueuedTimeout != time.Hour || got.Rollout != "r1" || !got.CreatedAt.Equal(t0) {
		t.Fatalf("Job = %+v, %v", got, err)
	}
	execs, err := s.JobExecutions(ctx, "j1")
	if err != nil || len(execs) != 2 || execs[0].DeviceID != "a" || execs[1].DeviceID != "b" || execs[0].Status != "QUEUED" || execs[0].Version != 1 {
		t.Fatalf("JobExecutions = %+v, %v", execs, err)
	}
	if _, err := s.JobExecution(ctx, "j1", "c"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("JobExecution of a non-target: %v", err)
	}

	// Reopening keeps everything.
	s.Close()
	s = openAt(t, path)
	jobs, err := s.Jobs(ctx)
	if err != nil || len(jobs) != 1 || jobs[0].ID != "j1" {
		t.Fatalf("Jobs after reopen = %+v, %v", jobs, err)
	}
	e, err := s.JobExecution(ctx, "j1", "b")
	if err != nil || e.Status != "QUEUED" || !e.QueuedAt.Equal(t0) {
		t.Fatalf("JobExecution after reopen = %+v, %v", e, err)
	}
}

func TestJobsPendingOrderAndOverdue(t *testing.T) {
	s := open(t)
	ctx := t.Context()
	mustCreateDevice(t, s, "a", nil)
	mustCreateJob(t, s, store.Job{ID: "late", Document: []byte(`{}`), CreatedAt: t0.Add(time.Second), QueuedTimeout: time.Minute}, "a")
	mustCreateJob(t, s, store.Job{ID: "early", Document: []byte(`{}`), CreatedAt: t0, InProgressTimeout: 10 * time.Second}, "a")
	mustCreateJob(t, s, store.Job{ID: "same", Document: []byte(`{}`), CreatedAt: t0.Add(time.Second)}, "a")

	pending, err := s.PendingJobExecutions(ctx, "a")
	if err != nil || len(pending) != 3 || pending[0].JobID != "early" || pending[1].JobID != "late" || pending[2].JobID != "same" {
		t.Fatalf("PendingJobExecutions = %+v, %v", pending, err)
	}
	start := func(cur store.JobExecution) (store.JobExecution, error) {
		cur.Status, cur.StartedAt, cur.Version = "IN_PROGRESS", t0.Add(5*time.Second), cur.Version+1
		return cur, nil
	}
	if _, err := s.UpdateJobExecution(ctx, "early", "a", start); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		at   time.Duration
		want []string
	}{
		{14 * time.Second, nil},
		{15 * time.Second, []string{"early"}},
		{61 * time.Second, []string{"early", "late"}},
	} {
		over, err := s.OverdueJobExecutions(ctx, t0.Add(tc.at))
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, e := range over {
			ids = append(ids, e.JobID)
		}
		if len(ids) != len(tc.want) || (len(ids) > 0 && (ids[0] != tc.want[0] || ids[len(ids)-1] != tc.want[len(ids)-1])) {
			t.Errorf("OverdueJobExecutions(+%s) = %v, want %v", tc.at, ids, tc.want)
		}
	}
	finish := func(cur store.JobExecution) (store.JobExecution, error) {
		cur.Status, cur.Version = "SUCCEEDED", cur.Version+1
		return cur, nil
	}
	if _, err := s.UpdateJobExecution(ctx, "early", "a", finish); err != nil {
		t.Fatal(err)
	}
	pending, _ = s.PendingJobExecutions(ctx, "a")
	if len(pending) != 2 || pending[0].JobID != "late" {
		t.Fatalf("PendingJobExecutions after finishing early = %+v", pending)
	}
}

func TestJobsUpdateExecution(t *testing.T) {
	s := open(t)
	ctx := t.Context()
	mustCreateDevice(t, s, "a", nil)
	mustCreateJob(t, s, store.Job{ID: "j", Document: []byte(`{}`), CreatedAt: t0}, "a")

	if _, err := s.UpdateJobExecution(ctx, "j", "zz", func(c store.JobExecution) (store.JobExecution, error) { return c, nil }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateJobExecution of a missing execution: %v", err)
	}
	boom := errors.New("boom")
	if _, err := s.UpdateJobExecution(ctx, "j", "a", func(c store.JobExecution) (store.JobExecution, error) { return c, boom }); !errors.Is(err, boom) {
		t.Fatalf("fn error: %v", err)
	}
	if _, err := s.UpdateJobExecution(ctx, "j", "a", func(c store.JobExecution) (store.JobExecution, error) { return c, nil }); err == nil {
		t.Fatal("an update that keeps the version was stored")
	}

	// Concurrent updates never lose one: each adds its key to the details.
	const n = 10
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, err := s.UpdateJobExecution(ctx, "j", "a", func(c store.JobExecution) (store.JobExecution, error) {
				d := map[string]string{}
				for k, v := range c.StatusDetails {
					d[k] = v
				}
				d["k"+strconv.Itoa(i)] = "v"
				c.Status, c.StatusDetails, c.Version, c.LastUpdatedAt = "IN_PROGRESS", d, c.Version+1, t0.Add(time.Duration(i)*time.Millisecond)
				return c, nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	e, err := s.JobExecution(ctx, "j", "a")
	if err != nil || e.Version != n+1 || len(e.StatusDetails) != n {
		t.Fatalf("after %d concurrent updates: %+v, %v", n, e, err)
	}
}
