package slots

import "errors"

var (
	// ErrTrialPending is returned by Stage while another trial has not yet
	// been committed or rolled back.
	ErrTrialPending = errors.New("an update trial is pending")
	// ErrNoTrial is returned by Commit and Rollback when no trial is pending.
	ErrNoTrial = errors.New("no update trial is pending")
	// ErrCorruptState means state.json exists but cannot be used.
	ErrCorruptState = errors.New("slot state is corrupt")
	// ErrWindowExpired is returned by AwaitCommit when the trial did not
	// become healthy within its commit window; the trial has been rolled
	// back and the process should exit with TrialExpiredExitCode.
	ErrWindowExpired = errors.New("update trial not healthy within its commit window")
	// ErrRestart asks the agent's run command to exit with RestartExitCode,
	// so that the init system starts it again and Launch starts the staged
	// trial. A job handler returns an error wrapping it after Stage.
	ErrRestart = errors.New("restarting to start the staged update")
)

// Reasons are the stable codes in Error.Reason and Result.Reason; a job
// reports them as statusDetails.reason.
const (
	// ReasonExecFormat: the staged file is not an executable for this
	// machine (wrong architecture, not a binary at all).
	ReasonExecFormat = "exec_format"
	// ReasonVerifyFailed: `<binary> version` failed, timed out or could not
	// be started.
	ReasonVerifyFailed = "verify_failed"
	// ReasonVersionMismatch: `<binary> version` did not print the version
	// the binary was staged as.
	ReasonVersionMismatch = "version_mismatch"
	// ReasonTrialPending: Stage was called while a trial is pending.
	ReasonTrialPending = "trial_pending"
	// ReasonInvalid: bad arguments.
	ReasonInvalid = "invalid"
	// ReasonIO: a disk error; retrying may succeed.
	ReasonIO = "io"

	// ReasonCrashLoop: the trial was started MaxStarts times without
	// committing.
	ReasonCrashLoop = "crash_loop"
	// ReasonWindowExpired: the trial did not commit within its window.
	ReasonWindowExpired = "commit_window_expired"
	// ReasonSlotMissing: the trial's binary was missing or not executable
	// when it was due to start.
	ReasonSlotMissing = "slot_missing"
	// ReasonExecFailed: exec of the trial's binary failed.
	ReasonExecFailed = "exec_failed"
)

// Error is a failed Stage, with a stable reason code.
type Error struct {
	// Reason is one of the Reason constants.
	Reason string
	// Err is the cause.
	Err error
}

func (e *Error) Error() string { return "staging update (" + e.Reason + "): " + e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// ReasonOf returns the reason code of err, ReasonIO when err carries none,
// and "" for nil.
func ReasonOf(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ReasonIO
}
