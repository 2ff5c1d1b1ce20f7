package store

import "time"

// Job is one stored job: a document sent to a set of devices. The store
// keeps the document as opaque JSON; the jobs service owns its meaning.
type Job struct {
	ID       string
	Document []byte
	// InProgressTimeout and QueuedTimeout bound how long an execution may
	// stay IN_PROGRESS (since it started) or QUEUED (since it was
	// queued); zero means no limit.
	InProgressTimeout time.Duration
	QueuedTimeout     time.Duration
	// Rollout is an optional tag of the rollout that created the job.
	Rollout   string
	CreatedAt time.Time
}

// JobExecution is one job's execution on one device.
type JobExecution struct {
	JobID    string
	DeviceID string
	// Status is a protocol.JobStatus, kept as text.
	Status        string
	StatusDetails map[string]string
	QueuedAt      time.Time
	StartedAt     time.Time // zero until it first went IN_PROGRESS
	LastUpdatedAt time.Time
	// Version is 1 when queued and grows by one with every change.
	Version         int64
	ExecutionNumber int64
}
