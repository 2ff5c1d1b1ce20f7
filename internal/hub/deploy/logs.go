package deploy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/protocol"
)

// DefaultLogsTimeout is how long Logs waits for a device's answer.
const DefaultLogsTimeout = 5 * time.Second

// Broker publishes to and subscribes in the hub's MQTT broker. fn runs on
// the broker's goroutines and must not block.
type Broker interface {
	Publish(topic string, payload []byte, retain bool, qos byte) error
	Subscribe(filter string, id int, fn func(topic string, payload []byte)) error
}

// logRequests matches log answers to the requests waiting for them.
type logRequests struct {
	broker  Broker
	timeout time.Duration
	// mu guards pending.
	mu      sync.Mutex
	pending map[string]pendingLogs
}

// pendingLogs is a request waiting for its answer; only device may answer.
type pendingLogs struct {
	device string
	ch     chan protocol.LogsResponse
}

// Logs asks a device for a service's log lines: the newest tail lines
// (protocol.MaxLogLines when 0), or with after > 0 only lines with a
// higher sequence number. It fails with ErrDeviceNotFound, ErrDeviceOffline
// at once, ErrDeviceTimeout when the device does not answer in time, and
// ErrNoService (with the device's response) when it has no such service.
func (s *Service) Logs(ctx context.Context, device, service string, tail int, after uint64) (protocol.LogsResponse, error) {
	if s.logs == nil {
		return protocol.LogsResponse{}, ErrLogsUnavailable
	}
	dev, err := s.devices.Get(ctx, device)
	if err != nil {
		return protocol.LogsResponse{}, err
	}
	if !dev.Online {
		return protocol.LogsResponse{}, fmt.Errorf("%w: %s", ErrDeviceOffline, device)
	}
	if tail < 0 || tail > protocol.MaxLogLines {
		tail = protocol.MaxLogLines
	}
	resp, err := s.logs.ask(ctx, device, protocol.LogsRequest{ID: newRequestID(), Service: service, Tail: tail, After: after})
	if err != nil {
		return resp, err
	}
	if resp.Error != "" {
		return resp, fmt.Errorf("%w: %s", ErrNoService, resp.Error)
	}
	return resp, nil
}

func newRequestID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (l *logRequests) ask(ctx context.Context, device string, req protocol.LogsRequest) (protocol.LogsResponse, error) {
	payload, err := json.Marshal(req)
	if err != nil {
		return protocol.LogsResponse{}, err
	}
	ch := make(chan protocol.LogsResponse, 1)
	l.mu.Lock()
	l.pending[req.ID] = pendingLogs{device: device, ch: ch}
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.pending, req.ID)
		l.mu.Unlock()
	}()
	if err := l.broker.Publish(protocol.LogsRequestTopic(device), payload, false, 1); err != nil {
		return protocol.LogsResponse{}, fmt.Errorf("publishing the log request to %s: %w", device, err)
	}
	t := time.NewTimer(l.timeout)
	defer t.Stop()
	select {
	case resp := <-ch:
		return resp, nil
	case <-t.C:
		return protocol.LogsResponse{}, fmt.Errorf("%w in %s: %s", ErrDeviceTimeout, l.timeout, device)
	case <-ctx.Done():
		return protocol.LogsResponse{}, ctx.Err()
	}
}

// handle takes a device's answer from the broker. Answers nobody waits
// for, and answers from another device than the one asked, are dropped.
func (l *logRequests) handle(topic string, payload []byte) {
	device, kind, err := protocol.ParseTopic(topic)
	if err != nil || kind != protocol.KindLogsResponse {
		return
	}
	var resp protocol.LogsResponse
	if err := json.Unmarshal(payload, &resp); err != nil {
		return
	}
	l.mu.Lock()
	p, ok := l.pending[resp.ID]
	l.mu.Unlock()
	if !ok || p.device != device {
		return
	}
	select {
	case p.ch <- resp:
	default: // answered already
	}
}
