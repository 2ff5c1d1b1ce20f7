package protocol

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// Jobs: the AWS IoT Jobs MQTT API, device side (docs/jobs.md). Every topic
// of a device's jobs lives under "$aws/things/{id}/jobs/"; the thing name is
// the device id.
//
//	notify-next                  hub → device: the next pending execution changed
//	notify                       hub → device: reserved (AWS pending-list summary)
//	$next/get[/accepted|rejected] describe the next pending execution
//	start-next[/accepted|rejected] start the next pending execution
//	{jobId}/get[/accepted|rejected] describe one execution
//	{jobId}/update[/accepted|rejected] change one execution's status

// Operations of the jobs topics, the Op of JobsTopicParts.
const (
	JobsOpGet        = "get"         // with JobID JobsNext or a job id
	JobsOpUpdate     = "update"      // with a job id
	JobsOpStartNext  = "start-next"  // no job id
	JobsOpNotifyNext = "notify-next" // hub → device, no job id
	JobsOpNotify     = "notify"      // hub → device, no job id; reserved
)

// JobsNext is the job id segment that names the next pending execution:
// "$aws/things/{id}/jobs/$next/get".
const JobsNext = "$next"

// Suffixes of the topics the hub answers requests on.
const (
	JobsAccepted = "accepted"
	JobsRejected = "rejected"
)

// JobsFilter matches every jobs topic of every device; the hub subscribes to
// it and ignores the topics it publishes itself.
const JobsFilter = "$aws/things/+/jobs/#"

// Limits on jobs requests, documents and status details.
const (
	// MaxJobIDLen is the longest job id, in bytes.
	MaxJobIDLen = 64
	// MaxJobDocumentBytes bounds a job document (JSON).
	MaxJobDocumentBytes = 32 << 10
	// MaxJobStatusDetails is the most keys statusDetails may hold.
	MaxJobStatusDetails = 10
	// MaxJobStatusDetailKeyLen is the longest statusDetails key, in bytes.
	MaxJobStatusDetailKeyLen = 128
	// MaxJobStatusDetailValueLen is the longest statusDetails value, in bytes.
	MaxJobStatusDetailValueLen = 1024
	// MaxJobsRequestBytes bounds the payload of one device request (get,
	// start-next, update); the largest legal statusDetails fits with room
	// for JSON escapes.
	MaxJobsRequestBytes = 64 << 10
	// MaxJobsMessageBytes bounds the payload of one hub message
	// (notify-next, accepted, rejected): a job document plus status
	// details and the envelope.
	MaxJobsMessageBytes = 128 << 10
)

// JobStatus is the status of a job execution.
type JobStatus string

// The statuses of a job execution. Terminal ones are final.
const (
	JobQueued     JobStatus = "QUEUED"
	JobInProgress JobStatus = "IN_PROGRESS"
	JobSucceeded  JobStatus = "SUCCEEDED"
	JobFailed     JobStatus = "FAILED"
	JobRejected   JobStatus = "REJECTED"
	JobTimedOut   JobStatus = "TIMED_OUT"
	JobCanceled   JobStatus = "CANCELED"
)

// Valid reports whether s is one of the statuses above.
func (s JobStatus) Valid() bool {
	switch s {
	case JobQueued, JobInProgress, JobSucceeded, JobFailed, JobRejected, JobTimedOut, JobCanceled:
		return true
	}
	return false
}

// Terminal reports whether s is final: no update changes it any more.
func (s JobStatus) Terminal() bool {
	switch s {
	case JobSucceeded, JobFailed, JobRejected, JobTimedOut, JobCanceled:
		return true
	}
	return false
}

// DeviceSettable reports whether a device may ask for status s in an
// update (IN_PROGRESS, SUCCEEDED, FAILED, REJECTED). QUEUED, CANCELED and
// TIMED_OUT are set only by the hub.
func (s JobStatus) DeviceSettable() bool {
	switch s {
	case JobInProgress, JobSucceeded, JobFailed, JobRejected:
		return true
	}
	return false
}

// DeviceMayTransition reports whether a device update may move an
// execution from status from to status to: from QUEUED or IN_PROGRESS to
// any device-settable status (IN_PROGRESS → IN_PROGRESS included, to
// report progress). Terminal statuses are final.
func DeviceMayTransition(from, to JobStatus) bool {
	return (from == JobQueued || from == JobInProgress) && to.DeviceSettable()
}

// HubMayTransition reports whether the hub may cancel or time out an
// execution in status from: cancel QUEUED or IN_PROGRESS; time out QUEUED
// (queued timeout: the device did not pick it up) or IN_PROGRESS.
func HubMayTransition(from, to JobStatus) bool {
	return (from == JobQueued || from == JobInProgress) && (to == JobCanceled || to == JobTimedOut)
}

// JobsErrorCode is the code of a jobs …/rejected message (the AWS IoT
// Jobs codes).
type JobsErrorCode string

// The codes a jobs request is rejected with.
const (
	JobsInvalidRequest         JobsErrorCode = "InvalidRequest"
	JobsInvalidStateTransition JobsErrorCode = "InvalidStateTransition"
	JobsVersionMismatch        JobsErrorCode = "VersionMismatch"
	JobsResourceNotFound       JobsErrorCode = "ResourceNotFound"
	JobsInternalError          JobsErrorCode = "InternalError"
)

// JobExecution is one job's execution on one device, as the hub sends it
// in notify-next, $next/get, start-next and {jobId}/get answers. Times are
// Unix seconds; StartedAt is 0 until the execution first went IN_PROGRESS.
type JobExecution struct {
	JobID           string            `json:"jobId"`
	ThingName       string            `json:"thingName"`
	JobDocument     json.RawMessage   `json:"jobDocument,omitempty"`
	Status          JobStatus         `json:"status"`
	StatusDetails   map[string]string `json:"statusDetails,omitempty"`
	QueuedAt        int64             `json:"queuedAt"`
	StartedAt       int64             `json:"startedAt,omitempty"`
	LastUpdatedAt   int64             `json:"lastUpdatedAt"`
	VersionNumber   int64             `json:"versionNumber"`
	ExecutionNumber int64             `json:"executionNumber"`
}

// JobExecutionState is the short state in update/accepted and in
// rejections caused by the execution's state.
type JobExecutionState struct {
	Status        JobStatus         `json:"status"`
	StatusDetails map[string]string `json:"statusDetails,omitempty"`
	VersionNumber int64             `json:"versionNumber"`
}

// JobsNotifyNext is the body of notify-next: the device's next pending
// execution (with its document), or none when nothing is pending.
type JobsNotifyNext struct {
	Timestamp int64         `json:"timestamp"`
	Execution *JobExecution `json:"execution,omitempty"`
}

// JobsGetRequest is the body of $next/get and {jobId}/get. The payload
// may be empty. IncludeJobDocument defaults to true.
type JobsGetRequest struct {
	ClientToken        string `json:"clientToken,omitempty"`
	IncludeJobDocument *bool  `json:"includeJobDocument,omitempty"`
	ExecutionNumber    int64  `json:"executionNumber,omitempty"`
}

// JobsStartNextRequest is the body of start-next. The payload may be
// empty.
type JobsStartNextRequest struct {
	ClientToken   string            `json:"clientToken,omitempty"`
	StatusDetails map[string]string `json:"statusDetails,omitempty"`
}

// JobsUpdateRequest is the body of {jobId}/update. Status is required;
// StatusDetails, when present, replaces the stored details; with
// ExpectedVersion set the execution must be at that version.
type JobsUpdateRequest struct {
	Status                   JobStatus         `json:"status"`
	StatusDetails            map[string]string `json:"statusDetails,omitempty"`
	ExpectedVersion          *int64            `json:"expectedVersion,omitempty"`
	ExecutionNumber          int64             `json:"executionNumber,omitempty"`
	IncludeJobExecutionState bool              `json:"includeJobExecutionState,omitempty"`
	IncludeJobDocument       bool              `json:"includeJobDocument,omitempty"`
	ClientToken              string            `json:"clientToken,omitempty"`
}

// JobsExecutionResponse is the body of $next/get/accepted,
// {jobId}/get/accepted and start-next/accepted. Execution is nil when
// nothing is pending ($next/get, start-next).
type JobsExecutionResponse struct {
	Execution   *JobExecution `json:"execution,omitempty"`
	Timestamp   int64         `json:"timestamp"`
	ClientToken string        `json:"clientToken,omitempty"`
}

// JobsUpdateResponse is the body of {jobId}/update/accepted.
// ExecutionState and JobDocument are present when the request asked for
// them.
type JobsUpdateResponse struct {
	ExecutionState *JobExecutionState `json:"executionState,omitempty"`
	JobDocument    json.RawMessage    `json:"jobDocument,omitempty"`
	Timestamp      int64              `json:"timestamp"`
	ClientToken    string             `json:"clientToken,omitempty"`
}

// JobsError is the body of every jobs …/rejected message. ExecutionState
// is present for InvalidStateTransition and VersionMismatch.
type JobsError struct {
	Code           JobsErrorCode      `json:"code"`
	Message        string             `json:"message"`
	ClientToken    string             `json:"clientToken,omitempty"`
	Timestamp      int64              `json:"timestamp"`
	ExecutionState *JobExecutionState `json:"executionState,omitempty"`
}

const jobsPart = "/jobs/"

// JobsTopicPrefix is the prefix of every jobs topic of a device.
func JobsTopicPrefix(deviceID string) string { return thingsPrefix + deviceID + "/jobs" }

// JobsTopic builds a jobs topic: jobID is JobsNext or a job id for
// JobsOpGet, a job id for JobsOpUpdate and empty for the others; suffix is
// empty for a request, else JobsAccepted or JobsRejected.
func JobsTopic(deviceID, jobID, op, suffix string) string {
	t := JobsTopicPrefix(deviceID) + "/"
	if jobID != "" {
		t += jobID + "/"
	}
	t += op
	if suffix != "" {
		t += "/" + suffix
	}
	return t
}

// JobsNotifyNextTopic is the topic the hub announces a device's next
// pending execution on.
func JobsNotifyNextTopic(deviceID string) string {
	return JobsTopic(deviceID, "", JobsOpNotifyNext, "")
}

// JobsTopicParts is a parsed jobs topic.
type JobsTopicParts struct {
	DeviceID string
	// JobID is a job id, JobsNext, or empty (start-next, notify,
	// notify-next).
	JobID  string
	Op     string // JobsOpGet, JobsOpUpdate, …
	Suffix string // empty, JobsAccepted or JobsRejected
}

// IsRequest reports whether the topic is one a device publishes a request
// to.
func (p JobsTopicParts) IsRequest() bool {
	return p.Suffix == "" && p.Op != JobsOpNotify && p.Op != JobsOpNotifyNext
}

// ParseJobsTopic splits a jobs topic into its parts. It fails for any
// topic that is not a jobs request, response or notification topic of a
// valid device id and job id.
func ParseJobsTopic(topic string) (JobsTopicParts, error) {
	rest, ok := strings.CutPrefix(topic, thingsPrefix)
	if !ok {
		return JobsTopicParts{}, errorf(CodeBadTopic, "topic %q is not under %q", topic, thingsPrefix)
	}
	id, rest, ok := strings.Cut(rest, jobsPart)
	if !ok {
		return JobsTopicParts{}, errorf(CodeBadTopic, "topic %q is not a jobs topic", topic)
	}
	if err := ValidDeviceID(id); err != nil {
		return JobsTopicParts{}, err
	}
	p := JobsTopicParts{DeviceID: id}
	parts := strings.Split(rest, "/")
	bad := func(why string) (JobsTopicParts, error) {
		return JobsTopicParts{}, errorf(CodeBadTopic, "topic %q: %s", topic, why)
	}
	isSuffix := func(s string) bool { return s == JobsAccepted || s == JobsRejected }
	switch {
	case len(parts) == 1 && (parts[0] == JobsOpNotify || parts[0] == JobsOpNotifyNext):
		p.Op = parts[0]
		return p, nil
	case parts[0] == JobsOpStartNext && (len(parts) == 1 || isSuffix(parts[1])):
		p.Op = parts[0]
		parts = parts[1:]
	default:
		if len(parts) < 2 {
			return bad("not a jobs operation topic")
		}
		p.JobID, p.Op = parts[0], parts[1]
		parts = parts[2:]
		switch {
		case p.Op != JobsOpGet && p.Op != JobsOpUpdate:
			return bad("unknown jobs operation " + p.Op)
		case p.JobID == JobsNext && p.Op == JobsOpUpdate:
			return bad("$next cannot be updated")
		case p.JobID != JobsNext:
			if err := ValidJobID(p.JobID); err != nil {
				return JobsTopicParts{}, err
			}
		}
	}
	switch len(parts) {
	case 0:
	case 1:
		if !isSuffix(parts[0]) {
			return bad("unknown jobs response " + parts[0])
		}
		p.Suffix = parts[0]
	default:
		return bad("too many levels")
	}
	return p, nil
}

// IsJobsServerTopic reports whether topic is one only the hub publishes
// on: a jobs …/accepted or …/rejected answer, notify or notify-next.
// Devices may subscribe to these but not publish to them.
func IsJobsServerTopic(topic string) bool {
	p, err := ParseJobsTopic(topic)
	return err == nil && !p.IsRequest()
}

// ValidJobID reports whether id is a usable job id: 1 to MaxJobIDLen bytes
// of ASCII letters, digits, '-' and '_'.
func ValidJobID(id string) error {
	if len(id) == 0 || len(id) > MaxJobIDLen {
		return errorf(CodeBadName, "job id must be 1 to %d characters, got %d", MaxJobIDLen, len(id))
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return errorf(CodeBadName, "job id %q has %q at byte %d; allowed are letters, digits, '-' and '_'", id, c, i)
		}
	}
	return nil
}

// ValidJobStatusDetails reports whether d respects the statusDetails
// limits: at most MaxJobStatusDetails keys, each a non-empty UTF-8 string
// of at most MaxJobStatusDetailKeyLen bytes, with UTF-8 values of at most
// MaxJobStatusDetailValueLen bytes.
func ValidJobStatusDetails(d map[string]string) error {
	if len(d) > MaxJobStatusDetails {
		return errorf(CodeBadValue, "statusDetails has %d keys, at most %d allowed", len(d), MaxJobStatusDetails)
	}
	for k, v := range d {
		if k == "" || len(k) > MaxJobStatusDetailKeyLen || !utf8.ValidString(k) {
			return errorf(CodeBadName, "statusDetails key must be 1 to %d bytes of UTF-8, got %d bytes", MaxJobStatusDetailKeyLen, len(k))
		}
		if len(v) > MaxJobStatusDetailValueLen || !utf8.ValidString(v) {
			return errorf(CodeBadValue, "statusDetails value of %q must be at most %d bytes of UTF-8, got %d", k, MaxJobStatusDetailValueLen, len(v))
		}
	}
	return nil
}

// ValidJobDocument reports whether doc is a usable job document: a JSON
// object of at most MaxJobDocumentBytes.
func ValidJobDocument(doc []byte) error {
	if len(doc) > MaxJobDocumentBytes {
		return errorf(CodeTooLarge, "job document is %d bytes, at most %d allowed", len(doc), MaxJobDocumentBytes)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(doc, &obj); err != nil || obj == nil {
		return errorf(CodeMalformed, "job document must be a JSON object")
	}
	return nil
}

// JobDocumentType returns the "type" field of a job document, the kind of
// work it asks for; "" when it has none or is not a JSON object.
func JobDocumentType(doc []byte) string {
	var d struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(doc, &d) != nil {
		return ""
	}
	return d.Type
}
