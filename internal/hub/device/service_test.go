package device

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/outpost-edge/outpost/internal/hub/store"
	"github.com/outpost-edge/outpost/internal/hub/store/sqlite"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)

// fakeDisconnector records the devices it was asked to disconnect.
type fakeDisconnector struct {
	mu  sync.Mutex
	ids []string
}

func (f *fakeDisconnector) DisconnectDevice(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ids = append(f.ids, id)
}

func (f *fakeDisconnector) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ids)
}

// fixture is a Service over a real SQLite store with a settable clock.
type fixture struct {
	svc   *Service
	st    *sqlite.Store
	disc  *fakeDisconnector
	clock time.Time
}

const tokenTTL = 24 * time.Hour

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "outpost.db"))
	if err != nil {
		t.Fatalf("opening store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{st: st, disc: &fakeDisconnector{}, clock: t0}
	f.svc = NewService(st, tokenTTL, slog.New(slog.NewTextHandler(io.Discard, nil)))
	f.svc.now = func() time.Time { return f.clock }
	f.svc.SetDisconnector(f.disc)
	return f
}

func (f *fixture) add(t *testing.T, id string, labels map[string]string) Enrollment {
	t.Helper()
	e, err := f.svc.Add(t.Context(), id, labels)
	if err != nil {
		t.Fatalf("Add(%q): %v", id, err)
	}
	return e
}

func (f *fixture) join(t *testing.T, token string) Credentials {
	t.Helper()
	c, err := f.svc.Join(t.Context(), token)
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	return c
}

func manyLabels(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[fmt.Sprintf("k%02d", i)] = "v"
	}
	return m
}

func TestAddValidates(t *testing.T) {
	tests := []struct {
		name   string
		id     string
		labels map[string]string
		// wantMsg lists substrings the error message must contain.
		wantMsg []string
	}{
		{name: "empty id", id: "", wantMsg: []string{"device id"}},
		{name: "id too long", id: strings.Repeat("a", 65), wantMsg: []string{"device id"}},
		{name: "id starts with dash", id: "-pump", wantMsg: []string{"-pump"}},
		{name: "id starts with dot", id: ".pump", wantMsg: []string{".pump"}},
		{name: "id with slash", id: "a/b", wantMsg: []string{"a/b"}},
		{name: "id with space", id: "pump 7", wantMsg: []string{"pump 7"}},
		{name: "id with plus (MQTT wildcard)", id: "pump+", wantMsg: []string{"pump+"}},
		{name: "id with hash (MQTT wildcard)", id: "pump#", wantMsg: []string{"pump#"}},
		{name: "id non-ASCII", id: "pümp", wantMsg: []string{"device id"}},
		{name: "too many labels", id: "ok", labels: manyLabels(MaxLabels + 1), wantMsg: []string{"at most 32 labels, got 33"}},
		{name: "empty key", id: "ok", labels: map[string]string{"": "v"}, wantMsg: []string{`label key ""`}},
		{name: "key with space", id: "ok", labels: map[string]string{"a b": "v"}, wantMsg: []string{`label key "a b"`}},
		{name: "key with equals", id: "ok", labels: map[string]string{"a=b": "v"}, wantMsg: []string{`label key "a=b"`}},
		{name: "key too long", id: "ok", labels: map[string]string{strings.Repeat("k", MaxLabelKeyLen+1): "v"}, wantMsg: []string{"label key"}},
		{name: "value too long", id: "ok", labels: map[string]string{"site": strings.Repeat("v", MaxLabelValueLen+1)}, wantMsg: []string{`label "site": value longer than 255 bytes`}},
		{
			name: "every problem listed",
			id:   "ok",
			labels: func() map[string]string {
				m := manyLabels(MaxLabels)
				m["bad key"] = "v"
				m["long"] = strings.Repeat("x", MaxLabelValueLen+1)
				m[""] = ""
				return m
			}(),
			wantMsg: []string{"at most 32 labels, got 35", `label key "bad key"`, `label "long": value longer`, `label key ""`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			_, err := f.svc.Add(t.Context(), tt.id, tt.labels)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Add err = %v, want ErrInvalid", err)
			}
			for _, w := range tt.wantMsg {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if ds, err := f.svc.List(t.Context(), nil); err != nil || len(ds) != 0 {
				t.Errorf("after a refused Add, List = %v, %v; want no devices", ds, err)
			}
		})
	}
}

func TestAddAcceptsLimits(t *testing.T) {
	tests := []struct {
		name   string
		id     string
		labels map[string]string
	}{
		{"one-char id", "a", nil},
		{"64-char id", strings.Repeat("a", 64), nil},
		{"all id characters", "Az09_-.x", nil},
		{"underscore first", "_x", nil},
		{"32 labels", "d", manyLabels(MaxLabels)},
		{"key charset and max length", "d", map[string]string{"example.com/Role_x-1": "", strings.Repeat("k", MaxLabelKeyLen): strings.Repeat("v", MaxLabelValueLen)}},
		{"values are free-form", "d", map[string]string{"note": "any thing = ok ✓"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			e := f.add(t, tt.id, tt.labels)
			if e.Device.ID != tt.id || !e.Device.CreatedAt.Equal(t0) {
				t.Errorf("Enrollment.Device = %+v, want id %q created %v", e.Device, tt.id, t0)
			}
			if !strings.HasPrefix(e.JoinToken, "ojt_") {
				t.Errorf("JoinToken = %q, want an ojt_ token", e.JoinToken)
			}
			if !e.ExpiresAt.Equal(t0.Add(tokenTTL)) {
				t.Errorf("ExpiresAt = %v, want %v", e.ExpiresAt, t0.Add(tokenTTL))
			}
			d, err := f.svc.Get(t.Context(), tt.id)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			want := tt.labels
			if want == nil {
				want = map[string]string{}
			}
			if !reflect.DeepEqual(d.Labels, want) {
				t.Errorf("stored labels = %v, want %v", d.Labels, want)
			}
		})
	}
}

func TestAddDuplicate(t *testing.T) {
	f := newFixture(t)
	first := f.add(t, "pump-7", map[string]string{"site": "a"})
	_, err := f.svc.Add(t.Context(), "pump-7", map[string]string{"site": "b"})
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate Add err = %v, want store.ErrExists", err)
	}
	d, _ := f.svc.Get(t.Context(), "pump-7")
	if d.Labels["site"] != "a" {
		t.Errorf("duplicate Add changed labels to %v", d.Labels)
	}
	// The first device's token must still work.
	if c := f.join(t, first.JoinToken); c.DeviceID != "pump-7" {
		t.Errorf("Join = %+v, want pump-7", c)
	}
}

func TestJoinAndAuthenticate(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	e := f.add(t, "pump-7", nil)
	f.add(t, "pump-8", nil)
	if f.svc.Authenticate(ctx, "pump-7", "anything") {
		t.Fatalf("Authenticate accepted a device that has not joined")
	}
	f.clock = t0.Add(time.Minute)
	cred := f.join(t, e.JoinToken)
	if cred.DeviceID != "pump-7" || cred.Password == "" {
		t.Fatalf("Join = %+v, want pump-7 and a password", cred)
	}
	if got := f.disc.calls(); !reflect.DeepEqual(got, []string{"pump-7"}) {
		t.Errorf("disconnects after Join = %v, want [pump-7]", got)
	}
	d, err := f.svc.Get(ctx, "pump-7")
	if err != nil || !d.JoinedAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("JoinedAt = %v, %v; want %v", d.JoinedAt, err, t0.Add(time.Minute))
	}

	tests := []struct {
		name     string
		id       string
		password string
		want     bool
	}{
		{"right", "pump-7", cred.Password, true},
		{"wrong password", "pump-7", cred.Password + "x", false},
		{"empty password", "pump-7", "", false},
		{"another device's name", "pump-8", cred.Password, false},
		{"unknown device", "pump-9", cred.Password, false},
		{"invalid id", "+", cred.Password, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := f.svc.Authenticate(ctx, tt.id, tt.password); got != tt.want {
				t.Errorf("Authenticate(%q, …) = %v, want %v", tt.id, got, tt.want)
			}
		})
	}
}

func TestRejoinReplacesPassword(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	e := f.add(t, "pump-7", nil)
	old := f.join(t, e.JoinToken)

	e2, err := f.svc.NewJoinToken(ctx, "pump-7")
	if err != nil {
		t.Fatalf("NewJoinToken: %v", err)
	}
	if e2.JoinToken == e.JoinToken {
		t.Fatalf("NewJoinToken returned the same token")
	}
	// Issuing a token alone must not lock the device out.
	if !f.svc.Authenticate(ctx, "pump-7", old.Password) {
		t.Errorf("old password refused before the new token was redeemed")
	}
	fresh := f.join(t, e2.JoinToken)
	if fresh.Password == old.Password {
		t.Fatalf("re-join returned the same password")
	}
	if f.svc.Authenticate(ctx, "pump-7", old.Password) {
		t.Errorf("old password still accepted after re-join")
	}
	if !f.svc.Authenticate(ctx, "pump-7", fresh.Password) {
		t.Errorf("new password refused after re-join")
	}
	if got := f.disc.calls(); !reflect.DeepEqual(got, []string{"pump-7", "pump-7"}) {
		t.Errorf("disconnects = %v, want pump-7 twice (once per join)", got)
	}
	if _, err := f.svc.NewJoinToken(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("NewJoinToken(unknown) err = %v, want store.ErrNotFound", err)
	}
}

func TestJoinRefused(t *testing.T) {
	tests := []struct {
		name string
		// token returns the token to redeem, after any setup.
		token func(t *testing.T, f *fixture) string
		want  error
	}{
		{
			name: "unknown",
			token: func(t *testing.T, f *fixture) string {
				f.add(t, "pump-7", nil)
				return "ojt_not-a-real-token"
			},
			want: store.ErrTokenUnknown,
		},
		{
			name: "used",
			token: func(t *testing.T, f *fixture) string {
				e := f.add(t, "pump-7", nil)
				f.join(t, e.JoinToken)
				return e.JoinToken
			},
			want: store.ErrTokenUsed,
		},
		{
			name: "expired",
			token: func(t *testing.T, f *fixture) string {
				e := f.add(t, "pump-7", nil)
				f.clock = t0.Add(tokenTTL + time.Second)
				return e.JoinToken
			},
			want: store.ErrTokenExpired,
		},
		{
			name: "expired exactly at expiry",
			token: func(t *testing.T, f *fixture) string {
				e := f.add(t, "pump-7", nil)
				f.clock = e.ExpiresAt
				return e.JoinToken
			},
			want: store.ErrTokenExpired,
		},
		{
			name: "revoked by a newer token",
			token: func(t *testing.T, f *fixture) string {
				e := f.add(t, "pump-7", nil)
				if _, err := f.svc.NewJoinToken(t.Context(), "pump-7"); err != nil {
					t.Fatal(err)
				}
				return e.JoinToken
			},
			want: store.ErrTokenUnknown,
		},
		{
			name: "device deleted",
			token: func(t *testing.T, f *fixture) string {
				e := f.add(t, "pump-7", nil)
				if err := f.svc.Delete(t.Context(), "pump-7"); err != nil {
					t.Fatal(err)
				}
				return e.JoinToken
			},
			want: store.ErrTokenUnknown,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			tok := tt.token(t, f)
			before := len(f.disc.calls())
			c, err := f.svc.Join(t.Context(), tok)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Join = %+v, %v; want %v", c, err, tt.want)
			}
			if c != (Credentials{}) {
				t.Errorf("Join returned credentials %+v with an error", c)
			}
			if got := f.disc.calls(); len(got) != before {
				t.Errorf("a refused Join disconnected %v", got[before:])
			}
		})
	}

	t.Run("valid until just before expiry", func(t *testing.T) {
		f := newFixture(t)
		e := f.add(t, "pump-7", nil)
		f.clock = e.ExpiresAt.Add(-time.Millisecond)
		if c := f.join(t, e.JoinToken); c.DeviceID != "pump-7" {
			t.Errorf("Join = %+v, want pump-7", c)
		}
	})
}

func TestDelete(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	e := f.add(t, "pump-7", nil)
	cred := f.join(t, e.JoinToken)
	f.add(t, "pump-8", nil)

	if err := f.svc.Delete(ctx, "pump-7"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if got := f.disc.calls(); !reflect.DeepEqual(got, []string{"pump-7", "pump-7"}) {
		t.Errorf("disconnects = %v, want [pump-7 pump-7] (join, then delete)", got)
	}
	if _, err := f.svc.Get(ctx, "pump-7"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get after Delete err = %v, want store.ErrNotFound", err)
	}
	if f.svc.Authenticate(ctx, "pump-7", cred.Password) {
		t.Errorf("deleted device still authenticates")
	}
	if err := f.svc.Delete(ctx, "pump-7"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second Delete err = %v, want store.ErrNotFound", err)
	}
	if got := f.disc.calls(); len(got) != 2 {
		t.Errorf("a failed Delete disconnected: %v", got)
	}
	// A re-added device with the same id does not inherit the old password.
	e2 := f.add(t, "pump-7", nil)
	if f.svc.Authenticate(ctx, "pump-7", cred.Password) {
		t.Errorf("re-added device accepts the deleted device's password")
	}
	f.join(t, e2.JoinToken)
}

func TestListSelectsByLabels(t *testing.T) {
	f := newFixture(t)
	f.add(t, "c", map[string]string{"site": "a", "role": "pump"})
	f.add(t, "a", map[string]string{"site": "a"})
	f.add(t, "b", map[string]string{"site": "b", "role": "pump"})
	f.add(t, "d", nil)
	tests := []struct {
		name string
		sel  map[string]string
		want []string
	}{
		{"no selector", nil, []string{"a", "b", "c", "d"}},
		{"one label", map[string]string{"site": "a"}, []string{"a", "c"}},
		{"all must match", map[string]string{"site": "a", "role": "pump"}, []string{"c"}},
		{"no match", map[string]string{"site": "z"}, []string{}},
		{"empty value is a value", map[string]string{"site": ""}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds, err := f.svc.List(t.Context(), tt.sel)
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			got := []string{}
			for _, d := range ds {
				got = append(got, d.ID)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("List(%v) = %v, want %v", tt.sel, got, tt.want)
			}
		})
	}
}

func TestSetPresence(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	f.add(t, "pump-7", nil)
	f.clock = t0.Add(time.Minute)
	f.svc.SetPresence(ctx, "pump-7", true, "0.1.0")
	d, err := f.svc.Get(ctx, "pump-7")
	if err != nil || !d.Online || d.AgentVersion != "0.1.0" || !d.LastSeen.Equal(t0.Add(time.Minute)) {
		t.Errorf("after connect: %+v, %v; want online, 0.1.0, last seen %v", d, err, t0.Add(time.Minute))
	}
	f.clock = t0.Add(2 * time.Minute)
	f.svc.SetPresence(ctx, "pump-7", false, "")
	d, _ = f.svc.Get(ctx, "pump-7")
	if d.Online || d.AgentVersion != "0.1.0" || !d.LastSeen.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("after disconnect: %+v; want offline, 0.1.0 kept, last seen %v", d, t0.Add(2*time.Minute))
	}
}
