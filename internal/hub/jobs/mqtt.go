package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/store"
	"github.com/outpost-edge/outpost/protocol"
)

// HandleMQTT answers one message on a jobs topic, the MQTT adapter of the
// Service: a request on $next/get, start-next, {jobId}/get or
// {jobId}/update is answered on its …/accepted or …/rejected topic.
// Messages on the topics the hub publishes and on other topics are
// ignored. The broker's topic ACL guarantees that only the device itself
// (or the hub) publishes under $aws/things/{id}/, so the id in the topic is
// trusted.
//
// The broker calls it from the publishing client's goroutine, which keeps
// each device's requests in order.
func (s *Service) HandleMQTT(ctx context.Context, topic string, payload []byte) {
	p, err := protocol.ParseJobsTopic(topic)
	if err != nil || !p.IsRequest() || s.pub == nil {
		return
	}
	if len(payload) > protocol.MaxJobsRequestBytes {
		s.rejectMQTT(p, "", reject(protocol.JobsInvalidRequest, "The payload exceeds the maximum size allowed (%d bytes)", protocol.MaxJobsRequestBytes))
		return
	}
	tok := clientToken(payload)
	var res any
	switch {
	case p.Op == protocol.JobsOpGet:
		var req protocol.JobsGetRequest
		if err = decode(payload, &req.ClientToken, &req); err == nil {
			res, err = s.describe(ctx, p.DeviceID, p.JobID, req)
		}
	case p.Op == protocol.JobsOpStartNext:
		var req protocol.JobsStartNextRequest
		if err = decode(payload, &req.ClientToken, &req); err == nil {
			res, err = s.startNext(ctx, p.DeviceID, req)
		}
	case p.Op == protocol.JobsOpUpdate:
		var req protocol.JobsUpdateRequest
		if err = decode(payload, &req.ClientToken, &req); err == nil {
			res, err = s.update(ctx, p.DeviceID, p.JobID, req)
		}
	default:
		return
	}
	if err != nil {
		s.rejectMQTT(p, tok, err)
		return
	}
	s.publish(protocol.JobsTopic(p.DeviceID, p.JobID, p.Op, protocol.JobsAccepted), res)
}

// rejectMQTT publishes the error document of a refused request.
func (s *Service) rejectMQTT(p protocol.JobsTopicParts, clientToken string, err error) {
	code, msg, st := codeOf(err)
	s.rejected.WithLabelValues(p.Op, string(code)).Inc()
	if code == protocol.JobsInternalError {
		s.logger.Error("jobs request failed", "device", p.DeviceID, "job", p.JobID, "op", p.Op, "err", err)
	} else {
		s.logger.Debug("jobs request rejected", "device", p.DeviceID, "job", p.JobID, "op", p.Op, "code", code, "message", msg)
	}
	s.publish(protocol.JobsTopic(p.DeviceID, p.JobID, p.Op, protocol.JobsRejected), protocol.JobsError{
		Code: code, Message: msg, ClientToken: clientToken, Timestamp: s.now().Unix(), ExecutionState: st,
	})
}

// clientToken returns the clientToken of a request, if the payload is a
// JSON object whose clientToken is a string of at most
// protocol.MaxClientTokenLen bytes, even when the rest of the request is
// malformed; else "".
func clientToken(payload []byte) string {
	var fields map[string]json.RawMessage
	if json.Unmarshal(payload, &fields) != nil {
		return ""
	}
	var tok string
	if json.Unmarshal(fields["clientToken"], &tok) != nil || len(tok) > protocol.MaxClientTokenLen {
		return ""
	}
	return tok
}

// decode decodes a request into v (an empty payload is an empty request)
// and checks its clientToken, which decode finds at tok.
func decode(payload []byte, tok *string, v any) error {
	if len(payload) == 0 {
		return nil
	}
	if err := json.Unmarshal(payload, v); err != nil {
		return reject(protocol.JobsInvalidRequest, "Invalid JSON: %s", err.Error())
	}
	if len(*tok) > protocol.MaxClientTokenLen {
		return reject(protocol.JobsInvalidRequest, "clientToken is longer than %d bytes", protocol.MaxClientTokenLen)
	}
	return nil
}

func (s *Service) nowMs() time.Time { return s.now().UTC().Truncate(time.Millisecond) }

// describe answers $next/get and {jobId}/get.
func (s *Service) describe(ctx context.Context, deviceID, jobID string, req protocol.JobsGetRequest) (protocol.JobsExecutionResponse, error) {
	res := protocol.JobsExecutionResponse{Timestamp: s.now().Unix(), ClientToken: req.ClientToken}
	var e *store.JobExecution
	if jobID == protocol.JobsNext {
		next, err := s.nextPending(ctx, deviceID)
		if err != nil {
			return res, fmt.Errorf("reading the next job execution of %s: %w", deviceID, err)
		}
		if next == nil {
			return res, nil
		}
		e = next
	} else {
		cur, err := s.store.JobExecution(ctx, jobID, deviceID)
		if errors.Is(err, store.ErrNotFound) {
			return res, notFound(jobID, deviceID)
		}
		if err != nil {
			return res, fmt.Errorf("reading job execution %s/%s: %w", jobID, deviceID, err)
		}
		e = &cur
	}
	var doc []byte
	if req.IncludeJobDocument == nil || *req.IncludeJobDocument {
		j, err := s.store.Job(ctx, e.JobID)
		if err != nil {
			return res, fmt.Errorf("reading job %s: %w", e.JobID, err)
		}
		doc = j.Document
	}
	res.Execution = wire(*e, doc)
	return res, nil
}

// startNext answers start-next: the next pending execution, moved to
// IN_PROGRESS if it was QUEUED.
func (s *Service) startNext(ctx context.Context, deviceID string, req protocol.JobsStartNextRequest) (protocol.JobsExecutionResponse, error) {
	res := protocol.JobsExecutionResponse{Timestamp: s.now().Unix(), ClientToken: req.ClientToken}
	if err := protocol.ValidJobStatusDetails(req.StatusDetails); err != nil {
		return res, reject(protocol.JobsInvalidRequest, "%s", err.Error())
	}
	mu := s.lock(deviceID)
	mu.Lock()
	next, err := s.nextPending(ctx, deviceID)
	if err != nil || next == nil {
		mu.Unlock()
		if err != nil {
			return res, fmt.Errorf("reading the next job execution of %s: %w", deviceID, err)
		}
		return res, nil
	}
	e, changed := *next, false
	if protocol.JobStatus(next.Status) == protocol.JobQueued {
		e, changed, err = s.changeLocked(ctx, next.JobID, deviceID, true, func(cur store.JobExecution) (store.JobExecution, error) {
			if protocol.JobStatus(cur.Status) != protocol.JobQueued {
				return cur, errUnchanged
			}
			now := s.nowMs()
			n := cur
			n.Status, n.StartedAt, n.LastUpdatedAt, n.Version = string(protocol.JobInProgress), now, now, cur.Version+1
			if req.StatusDetails != nil {
				n.StatusDetails = req.StatusDetails
			}
			return n, nil
		})
		if err == nil && !changed {
			e, err = s.store.JobExecution(ctx, next.JobID, deviceID)
		}
	}
	mu.Unlock()
	if changed {
		s.fire(e)
	}
	if err != nil {
		return res, err
	}
	j, err := s.store.Job(ctx, e.JobID)
	if err != nil {
		return res, fmt.Errorf("reading job %s: %w", e.JobID, err)
	}
	res.Execution = wire(e, j.Document)
	return res, nil
}

// update answers {jobId}/update: a status change the device asks for.
func (s *Service) update(ctx context.Context, deviceID, jobID string, req protocol.JobsUpdateRequest) (protocol.JobsUpdateResponse, error) {
	res := protocol.JobsUpdateResponse{Timestamp: s.now().Unix(), ClientToken: req.ClientToken}
	if !req.Status.DeviceSettable() {
		return res, reject(protocol.JobsInvalidRequest, "status must be one of IN_PROGRESS, SUCCEEDED, FAILED, REJECTED, got %q", req.Status)
	}
	if err := protocol.ValidJobStatusDetails(req.StatusDetails); err != nil {
		return res, reject(protocol.JobsInvalidRequest, "%s", err.Error())
	}
	e, _, err := s.change(ctx, jobID, deviceID, req.ExpectedVersion == nil, func(cur store.JobExecution) (store.JobExecution, error) {
		from := protocol.JobStatus(cur.Status)
		if req.ExpectedVersion != nil && *req.ExpectedVersion != cur.Version {
			return cur, &Rejection{Code: protocol.JobsVersionMismatch,
				Message: fmt.Sprintf("expected version %d, the execution is at %d", *req.ExpectedVersion, cur.Version), State: state(cur)}
		}
		if !protocol.DeviceMayTransition(from, req.Status) {
			return cur, &Rejection{Code: protocol.JobsInvalidStateTransition,
				Message: fmt.Sprintf("cannot update job execution from %s to %s", from, req.Status), State: state(cur)}
		}
		now := s.nowMs()
		n := cur
		n.Status, n.LastUpdatedAt, n.Version = string(req.Status), now, cur.Version+1
		if req.StatusDetails != nil {
			n.StatusDetails = req.StatusDetails
		}
		if req.Status == protocol.JobInProgress && cur.StartedAt.IsZero() {
			n.StartedAt = now
		}
		return n, nil
	})
	if err != nil {
		return res, err
	}
	if req.IncludeJobExecutionState {
		res.ExecutionState = state(e)
	}
	if req.IncludeJobDocument {
		j, err := s.store.Job(ctx, jobID)
		if err != nil {
			return res, fmt.Errorf("reading job %s: %w", jobID, err)
		}
		res.JobDocument = j.Document
	}
	return res, nil
}
