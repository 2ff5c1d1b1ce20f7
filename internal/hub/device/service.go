package device

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/auth"
	"github.com/outpost-edge/outpost/internal/hub/store"
	"github.com/outpost-edge/outpost/protocol"
)

// Store is what the device service needs from storage.
type Store interface {
	CreateDevice(ctx context.Context, d store.Device) error
	Device(ctx context.Context, id string) (store.Device, error)
	Devices(ctx context.Context) ([]store.Device, error)
	DeleteDevice(ctx context.Context, id string) error
	// UpdateDeviceLabels replaces a device's labels and returns the device
	// afterwards; store.ErrNotFound if it is unknown.
	UpdateDeviceLabels(ctx context.Context, id string, labels map[string]string) (store.Device, error)
	DeviceSecretHash(ctx context.Context, id string) ([]byte, error)
	AddJoinToken(ctx context.Context, deviceID string, hash []byte, expires time.Time) error
	RedeemJoinToken(ctx context.Context, hash []byte, now time.Time, secretHash []byte) (string, error)
	// SetPresence applies the changes in order, in one write.
	SetPresence(ctx context.Context, ps ...store.Presence) error
}

// Disconnector drops a device's live MQTT connection (after delete or re-join).
type Disconnector interface {
	DisconnectDevice(id string)
}

// Limits on labels.
const (
	MaxLabels        = 32
	MaxLabelKeyLen   = 63
	MaxLabelValueLen = 255
)

// Service manages devices. It is safe for concurrent use.
type Service struct {
	store    Store
	tokenTTL time.Duration
	logger   *slog.Logger
	now      func() time.Time
	// disconnect is set once by SetDisconnector before the broker starts.
	disconnect Disconnector
	presence   presenceBatch
	// labelsMu serializes SetLabels' read-merge-write, so that two
	// concurrent patches of one device do not lose each other's changes.
	labelsMu sync.Mutex
}

// NewService returns a Service; join tokens it issues live for tokenTTL.
func NewService(st Store, tokenTTL time.Duration, logger *slog.Logger) *Service {
	return &Service{store: st, tokenTTL: tokenTTL, logger: logger.With("component", "device"), now: time.Now}
}

// SetDisconnector wires the broker in; call it before serving.
func (s *Service) SetDisconnector(d Disconnector) { s.disconnect = d }

// Enrollment is a newly issued join token for a device.
type Enrollment struct {
	Device    store.Device
	JoinToken string
	ExpiresAt time.Time
}

// Credentials is what a device receives when it joins.
type Credentials struct {
	DeviceID string
	Password string
}

// Add registers a device and issues its first join token.
func (s *Service) Add(ctx context.Context, id string, labels map[string]string) (Enrollment, error) {
	if err := protocol.ValidDeviceID(id); err != nil {
		return Enrollment{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := ValidateLabels(labels); err != nil {
		return Enrollment{}, err
	}
	d := store.Device{ID: id, Labels: maps.Clone(labels), CreatedAt: s.now().UTC().Truncate(time.Millisecond)}
	if d.Labels == nil {
		d.Labels = map[string]string{}
	}
	if err := s.store.CreateDevice(ctx, d); err != nil {
		if errors.Is(err, store.ErrExists) {
			return Enrollment{}, fmt.Errorf("device %q: %w", id, store.ErrExists)
		}
		return Enrollment{}, fmt.Errorf("creating device %q: %w", id, err)
	}
	s.logger.Info("device added", "device", id)
	return s.issueToken(ctx, d)
}

// NewJoinToken issues a fresh join token for an existing device, revoking
// its earlier unused ones.
func (s *Service) NewJoinToken(ctx context.Context, id string) (Enrollment, error) {
	d, err := s.Get(ctx, id)
	if err != nil {
		return Enrollment{}, err
	}
	return s.issueToken(ctx, d)
}

func (s *Service) issueToken(ctx context.Context, d store.Device) (Enrollment, error) {
	tok := auth.NewJoinToken()
	exp := s.now().Add(s.tokenTTL).UTC().Truncate(time.Second)
	if err := s.store.AddJoinToken(ctx, d.ID, auth.HashSecret(tok), exp); err != nil {
		return Enrollment{}, fmt.Errorf("storing join token for %q: %w", d.ID, err)
	}
	return Enrollment{Device: d, JoinToken: tok, ExpiresAt: exp}, nil
}

// Get returns one device; store.ErrNotFound if unknown.
func (s *Service) Get(ctx context.Context, id string) (store.Device, error) {
	d, err := s.store.Device(ctx, id)
	if err != nil {
		return d, fmt.Errorf("device %q: %w", id, err)
	}
	return d, nil
}

// List returns the devices whose labels include every pair of selector.
func (s *Service) List(ctx context.Context, selector map[string]string) ([]store.Device, error) {
	all, err := s.store.Devices(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing devices: %w", err)
	}
	out := make([]store.Device, 0, len(all))
	for _, d := range all {
		if matches(d.Labels, selector) {
			out = append(out, d)
		}
	}
	return out, nil
}

func matches(labels, selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// SetLabels changes a device's labels by a merge patch: a key with a value
// sets that label, a key with nil removes it (removing a missing label is
// not an error), and labels the patch does not name stay. The result must
// pass ValidateLabels; ErrInvalid lists every problem and nothing changes.
// It returns the device as stored afterwards; store.ErrNotFound if unknown.
func (s *Service) SetLabels(ctx context.Context, id string, patch map[string]*string) (store.Device, error) {
	s.labelsMu.Lock()
	defer s.labelsMu.Unlock()
	d, err := s.Get(ctx, id)
	if err != nil {
		return d, err
	}
	labels := mergeLabels(d.Labels, patch)
	if err := ValidateLabels(labels); err != nil {
		return store.Device{}, fmt.Errorf("device %q: %w", id, err)
	}
	if maps.Equal(labels, d.Labels) {
		return d, nil
	}
	d, err = s.store.UpdateDeviceLabels(ctx, id, labels)
	if err != nil {
		return d, fmt.Errorf("device %q: updating labels: %w", id, err)
	}
	s.logger.Info("device labels changed", "device", id, "labels", len(labels))
	return d, nil
}

// mergeLabels returns a copy of labels with patch applied: a value sets a
// label, nil removes it. It never returns nil.
func mergeLabels(labels map[string]string, patch map[string]*string) map[string]string {
	out := maps.Clone(labels)
	if out == nil {
		out = make(map[string]string, len(patch))
	}
	for k, v := range patch {
		if v == nil {
			delete(out, k)
			continue
		}
		out[k] = *v
	}
	return out
}

// Delete removes a device and its data and drops its connection.
func (s *Service) Delete(ctx context.Context, id string) error {
	if err := s.store.DeleteDevice(ctx, id); err != nil {
		return fmt.Errorf("device %q: %w", id, err)
	}
	if s.disconnect != nil {
		s.disconnect.DisconnectDevice(id)
	}
	s.logger.Info("device deleted", "device", id)
	return nil
}

// Join redeems a one-time join token for fresh MQTT credentials. The
// device's previous secret stops working and its live connection is dropped.
func (s *Service) Join(ctx context.Context, token string) (Credentials, error) {
	secret := auth.NewDeviceSecret()
	id, err := s.store.RedeemJoinToken(ctx, auth.HashSecret(token), s.now(), auth.HashSecret(secret))
	if err != nil {
		return Credentials{}, err
	}
	if s.disconnect != nil {
		s.disconnect.DisconnectDevice(id)
	}
	s.logger.Info("device joined", "device", id)
	return Credentials{DeviceID: id, Password: secret}, nil
}

// Authenticate reports whether password is the current secret of device id.
func (s *Service) Authenticate(ctx context.Context, id, password string) bool {
	if protocol.ValidDeviceID(id) != nil || password == "" {
		return false
	}
	h, err := s.store.DeviceSecretHash(ctx, id)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.logger.Error("reading device secret", "device", id, "err", err)
		}
		return false
	}
	return auth.SecretMatches(h, password)
}

// SetPresence records that a device connected or disconnected.
func (s *Service) SetPresence(ctx context.Context, id string, online bool, agentVersion string) {
	s.RecordStatus(ctx, id, online, agentVersion, nil)
}

// RecordStatus records a device's status message: presence, agent version
// and, when the agent sent one, its spool report, in one store write.
func (s *Service) RecordStatus(ctx context.Context, id string, online bool, agentVersion string, spool *store.SpoolStats) {
	now := s.now()
	if spool != nil {
		spool.ReportedAt = now
	}
	err := s.presence.write(ctx, s.store, store.Presence{DeviceID: id, Online: online, At: now, AgentVersion: agentVersion, Spool: spool})
	if err != nil {
		s.logger.Error("recording presence", "device", id, "online", online, "err", err)
	}
}

// ValidateLabels checks label count, key charset and lengths.
func ValidateLabels(labels map[string]string) error {
	var errs []error
	if len(labels) > MaxLabels {
		errs = append(errs, fmt.Errorf("at most %d labels, got %d", MaxLabels, len(labels)))
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "" || len(k) > MaxLabelKeyLen || strings.IndexFunc(k, badKeyRune) >= 0 {
			errs = append(errs, fmt.Errorf("label key %q must be 1 to %d of A-Z a-z 0-9 - _ . /", k, MaxLabelKeyLen))
		}
		if len(labels[k]) > MaxLabelValueLen {
			errs = append(errs, fmt.Errorf("label %q: value longer than %d bytes", k, MaxLabelValueLen))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: labels: %w", ErrInvalid, errors.Join(errs...))
	}
	return nil
}

func badKeyRune(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' || r == '/')
}
