package sqlite_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/outpost-edge/outpost/internal/hub/store"
	"github.com/outpost-edge/outpost/internal/hub/store/sqlite"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// t0 is a fixed, millisecond-aligned instant the tests count from.
var t0 = time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)

// openAt opens the database file at path and closes it when the test ends.
func openAt(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// open opens a fresh database in a temporary directory.
func open(t *testing.T) *sqlite.Store {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "outpost.db"))
}

func mustCreateDevice(t *testing.T, s *sqlite.Store, id string, labels map[string]string) {
	t.Helper()
	if err := s.CreateDevice(t.Context(), store.Device{ID: id, Labels: labels, CreatedAt: t0}); err != nil {
		t.Fatalf("CreateDevice(%s): %v", id, err)
	}
}

func mustAddToken(t *testing.T, s *sqlite.Store, id, token string, expires time.Time) {
	t.Helper()
	if err := s.AddJoinToken(t.Context(), id, []byte(token), expires); err != nil {
		t.Fatalf("AddJoinToken(%s, %s): %v", id, token, err)
	}
}

func numPoint(dev string, seq uint64, sensor string, ts time.Time, v float64) store.Point {
	return store.Point{DeviceID: dev, Seq: seq, Sensor: sensor, TS: ts, Kind: store.KindNum, Num: v}
}

// allPoints returns every point of a device.
func allPoints(t *testing.T, s *sqlite.Store, dev string) []store.Point {
	t.Helper()
	pts, err := s.Points(t.Context(), store.PointQuery{DeviceID: dev, Since: time.UnixMilli(0), Until: t0.Add(1000 * time.Hour), Limit: 1 << 30})
	if err != nil {
		t.Fatalf("Points(%s): %v", dev, err)
	}
	return pts
}

func seqs(pts []store.Point) []uint64 {
	out := make([]uint64, len(pts))
	for i, p := range pts {
		out[i] = p.Seq
	}
	return out
}

func TestReopenKeepsDataAndMigrationsAreIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outpost.db")
	ctx := t.Context()

	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("first Open: %v", err)
	}
	if err := s.CreateDevice(ctx, store.Device{ID: "pump-7", Labels: map[string]string{"site": "plant-1"}, CreatedAt: t0}); err != nil {
		t.Fatalf("CreateDevice: %v", err)
	}
	if err := s.CreateUser(ctx, "admin", "hash-1", t0); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	if _, err := s.PutSettingIfAbsent(ctx, "jwt-key", []byte("k1")); err != nil {
		t.Fatalf("PutSettingIfAbsent: %v", err)
	}
	if n, err := s.InsertPoints(ctx, []store.Point{numPoint("pump-7", 1, "temp", t0, 21.5)}, t0); err != nil || n != 1 {
		t.Fatalf("InsertPoints = %d, %v; want 1, nil", n, err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v (must be safe to call twice)", err)
	}

	// Opening twice more runs the migration step against an up-to-date schema.
	for i := range 2 {
		s := openAt(t, path)
		d, err := s.Device(ctx, "pump-7")
		if err != nil {
			t.Fatalf("reopen %d: Device: %v", i, err)
		}
		if d.Labels["site"] != "plant-1" || !d.CreatedAt.Equal(t0) {
			t.Errorf("reopen %d: Device = %+v, want labels site=plant-1, created %v", i, d, t0)
		}
		if h, err := s.UserPasswordHash(ctx, "admin"); err != nil || h != "hash-1" {
			t.Errorf("reopen %d: UserPasswordHash = %q, %v; want hash-1", i, h, err)
		}
		if v, err := s.Setting(ctx, "jwt-key"); err != nil || string(v) != "k1" {
			t.Errorf("reopen %d: Setting = %q, %v; want k1", i, v, err)
		}
		if n, err := s.CountPoints(ctx, "pump-7"); err != nil || n != 1 {
			t.Errorf("reopen %d: CountPoints = %d, %v; want 1", i, n, err)
		}
		if err := s.Ping(ctx); err != nil {
			t.Errorf("reopen %d: Ping: %v", i, err)
		}
		s.Close()
	}
}

func TestOpenCorruptFileFails(t *testing.T) {
	tests := []struct {
		name    string
		content []byte
	}{
		{"garbage", bytes.Repeat([]byte("this is not a sqlite database\x00\xff"), 512)},
		{"bad header page", append([]byte("SQLite format 3\x00"), bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 2048)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "outpost.db")
			if err := os.WriteFile(path, tt.content, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := sqlite.Open(t.Context(), path)
			if err == nil {
				s.Close()
				t.Fatalf("Open of a corrupt file succeeded; want an error")
			}
		})
	}
}

func TestSettings(t *testing.T) {
	s := open(t)
	ctx := t.Context()
	if _, err := s.Setting(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Setting(unknown) err = %v, want ErrNotFound", err)
	}
	got, err := s.PutSettingIfAbsent(ctx, "k", []byte("first"))
	if err != nil || string(got) != "first" {
		t.Fatalf("first PutSettingIfAbsent = %q, %v; want first", got, err)
	}
	got, err = s.PutSettingIfAbsent(ctx, "k", []byte("second"))
	if err != nil || string(got) != "first" {
		t.Fatalf("second PutSettingIfAbsent = %q, %v; want the first value kept", got, err)
	}
	if v, err := s.Setting(ctx, "k"); err != nil || string(v) != "first" {
		t.Fatalf("Setting = %q, %v; want first", v, err)
	}
}

func TestUsers(t *testing.T) {
	s := open(t)
	ctx := t.Context()
	if err := s.CreateUser(ctx, "admin", "h1", t0); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	if err := s.CreateUser(ctx, "admin", "h2", t0); !errors.Is(err, store.ErrExists) {
		t.Errorf("duplicate CreateUser err = %v, want ErrExists", err)
	}
	if err := s.SetUserPassword(ctx, "admin", "h3"); err != nil {
		t.Fatalf("SetUserPassword: %v", err)
	}
	if h, err := s.UserPasswordHash(ctx, "admin"); err != nil || h != "h3" {
		t.Errorf("UserPasswordHash = %q, %v; want h3", h, err)
	}
	if err := s.SetUserPassword(ctx, "nobody", "h"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetUserPassword(unknown) err = %v, want ErrNotFound", err)
	}
	if _, err := s.UserPasswordHash(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UserPasswordHash(unknown) err = %v, want ErrNotFound", err)
	}
}

func TestDevices(t *testing.T) {
	s := open(t)
	ctx := t.Context()
	mustCreateDevice(t, s, "b", map[string]string{"site": "x"})
	mustCreateDevice(t, s, "a", nil)

	if err := s.CreateDevice(ctx, store.Device{ID: "a", CreatedAt: t0}); !errors.Is(err, store.ErrExists) {
		t.Errorf("duplicate CreateDevice err = %v, want ErrExists", err)
	}
	if _, err := s.Device(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Device(unknown) err = %v, want ErrNotFound", err)
	}

	d, err := s.Device(ctx, "a")
	if err != nil {
		t.Fatalf("Device(a): %v", err)
	}
	want := store.Device{ID: "a", Labels: map[string]string{}, CreatedAt: t0}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("Device(a) = %+v, want %+v", d, want)
	}

	all, err := s.Devices(ctx)
	if err != nil {
		t.Fatalf("Devices: %v", err)
	}
	if len(all) != 2 || all[0].ID != "a" || all[1].ID != "b" || all[1].Labels["site"] != "x" {
		t.Errorf("Devices = %+v, want a then b (site=x)", all)
	}
	if _, err := s.DeviceSecretHash(ctx, "a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeviceSecretHash(never joined) err = %v, want ErrNotFound", err)
	}
	if err := s.AddJoinToken(ctx, "nope", []byte("t"), t0.Add(time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AddJoinToken(unknown device) err = %v, want ErrNotFound", err)
	}
}

func TestUpdateDeviceLabels(t *testing.T) {
	s := open(t)
	ctx := t.Context()
	mustCreateDevice(t, s, "pump-7", map[string]string{"site": "x", "line": "3"})
	mustCreateDevice(t, s, "other", map[string]string{"site": "x"})

	tests := []struct {
		name   string
		labels map[string]string
		want   map[string]string
	}{
		{"replace", map[string]string{"site": "y", "tier": "edge"}, map[string]string{"site": "y", "tier": "edge"}},
		{"empty", map[string]string{}, map[string]string{}},
		{"nil clears", nil, map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := s.UpdateDeviceLabels(ctx, "pump-7", tt.labels)
			if err != nil {
				t.Fatalf("UpdateDeviceLabels: %v", err)
			}
			if d.ID != "pump-7" || !d.CreatedAt.Equal(t0) || !reflect.DeepEqual(d.Labels, tt.want) {
				t.Errorf("returned device = %+v, want labels %v", d, tt.want)
			}
			got, err := s.Device(ctx, "pump-7")
			if err != nil || !reflect.DeepEqual(got, d) {
				t.Errorf("Device after update = %+v, %v; want %+v", got, err, d)
			}
		})
	}
	if other, err := s.Device(ctx, "other"); err != nil || other.Labels["site"] != "x" || len(other.Labels) != 1 {
		t.Errorf("other device = %+v, %v; its labels must not change", other, err)
	}
	if _, err := s.UpdateDeviceLabels(ctx, "nope", map[string]string{"a": "b"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateDeviceLabels(unknown) err = %v, want ErrNotFound", err)
	}
}

func TestDeleteDevice(t *testing.T) {
	s := open(t)
	ctx := t.Context()
	mustCreateDevice(t, s, "gone", nil)
	mustCreateDevice(t, s, "kept", nil)
	mustAddToken(t, s, "gone", "tok-gone", t0.Add(time.Hour))
	mustAddToken(t, s, "kept", "tok-kept", t0.Add(time.Hour))
	pts := []store.Point{
		numPoint("gone", 1, "temp", t0, 1),
		numPoint("gone", 2, "temp", t0.Add(time.Second), 2),
		numPoint("kept", 1, "temp", t0, 3),
	}
	if _, err := s.InsertPoints(ctx, pts, t0); err != nil {
		t.Fatalf("InsertPoints: %v", err)
	}

	if err := s.DeleteDevice(ctx, "gone"); err != nil {
		t.Fatalf("DeleteDevice: %v", err)
	}
	if _, err := s.Device(ctx, "gone"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Device after delete err = %v, want ErrNotFound", err)
	}
	if n, err := s.CountPoints(ctx, "gone"); err != nil || n != 0 {
		t.Errorf("CountPoints after delete = %d, %v; want 0", n, err)
	}
	if n, err := s.CountPoints(ctx, "kept"); err != nil || n != 1 {
		t.Errorf("CountPoints of the other device = %d, %v; want 1", n, err)
	}
	// Re-creating the id must not bring the deleted device's token back.
	mustCreateDevice(t, s, "gone", nil)
	if _, err := s.RedeemJoinToken(ctx, []byte("tok-gone"), t0, []byte("secret")); !errors.Is(err, store.ErrTokenUnknown) {
		t.Errorf("redeeming a deleted device's token err = %v, want ErrTokenUnknown", err)
	}
	if id, err := s.RedeemJoinToken(ctx, []byte("tok-kept"), t0, []byte("secret")); err != nil || id != "kept" {
		t.Errorf("redeeming the other device's token = %q, %v; want kept", id, err)
	}
	if err := s.DeleteDevice(ctx, "never-was"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteDevice(unknown) err = %v, want ErrNotFound", err)
	}
}

func TestJoinTokens(t *testing.T) {
	exp := t0.Add(time.Hour)
	tests := []struct {
		name   string
		setup  func(t *testing.T, s *sqlite.Store)
		token  string
		now    time.Time
		wantID string
		want   error
	}{
		{
			name:   "valid",
			setup:  func(t *testing.T, s *sqlite.Store) { mustAddToken(t, s, "dev", "t1", exp) },
			token:  "t1",
			now:    t0,
			wantID: "dev",
		},
		{
			name:   "one millisecond before expiry",
			setup:  func(t *testing.T, s *sqlite.Store) { mustAddToken(t, s, "dev", "t1", exp) },
			token:  "t1",
			now:    exp.Add(-time.Millisecond),
			wantID: "dev",
		},
		{
			name:  "expired at expiry",
			setup: func(t *testing.T, s *sqlite.Store) { mustAddToken(t, s, "dev", "t1", exp) },
			token: "t1",
			now:   exp,
			want:  store.ErrTokenExpired,
		},
		{
			name:  "expired",
			setup: func(t *testing.T, s *sqlite.Store) { mustAddToken(t, s, "dev", "t1", exp) },
			token: "t1",
			now:   exp.Add(time.Minute),
			want:  store.ErrTokenExpired,
		},
		{
			name:  "unknown",
			setup: func(t *testing.T, s *sqlite.Store) { mustAddToken(t, s, "dev", "t1", exp) },
			token: "other",
			now:   t0,
			want:  store.ErrTokenUnknown,
		},
		{
			name: "revoked by a newer token",
			setup: func(t *testing.T, s *sqlite.Store) {
				mustAddToken(t, s, "dev", "t1", exp)
				mustAddToken(t, s, "dev", "t2", exp)
			},
			token: "t1",
			now:   t0,
			want:  store.ErrTokenUnknown,
		},
		{
			name: "newer token works",
			setup: func(t *testing.T, s *sqlite.Store) {
				mustAddToken(t, s, "dev", "t1", exp)
				mustAddToken(t, s, "dev", "t2", exp)
			},
			token:  "t2",
			now:    t0,
			wantID: "dev",
		},
		{
			name: "used",
			setup: func(t *testing.T, s *sqlite.Store) {
				mustAddToken(t, s, "dev", "t1", exp)
				if _, err := s.RedeemJoinToken(t.Context(), []byte("t1"), t0, []byte("s1")); err != nil {
					t.Fatalf("first redeem: %v", err)
				}
			},
			token: "t1",
			now:   t0.Add(time.Second),
			want:  store.ErrTokenUsed,
		},
		{
			name: "used token survives a newer token",
			setup: func(t *testing.T, s *sqlite.Store) {
				mustAddToken(t, s, "dev", "t1", exp)
				if _, err := s.RedeemJoinToken(t.Context(), []byte("t1"), t0, []byte("s1")); err != nil {
					t.Fatalf("first redeem: %v", err)
				}
				mustAddToken(t, s, "dev", "t2", exp)
			},
			token: "t1",
			now:   t0.Add(time.Second),
			want:  store.ErrTokenUsed,
		},
		{
			name: "used beats expired",
			setup: func(t *testing.T, s *sqlite.Store) {
				mustAddToken(t, s, "dev", "t1", exp)
				if _, err := s.RedeemJoinToken(t.Context(), []byte("t1"), t0, []byte("s1")); err != nil {
					t.Fatalf("first redeem: %v", err)
				}
			},
			token: "t1",
			now:   exp.Add(time.Hour),
			want:  store.ErrTokenUsed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			ctx := t.Context()
			mustCreateDevice(t, s, "dev", nil)
			tt.setup(t, s)
			before, err := s.DeviceSecretHash(ctx, "dev")
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("DeviceSecretHash: %v", err)
			}

			secret := []byte("secret-" + tt.name)
			id, err := s.RedeemJoinToken(ctx, []byte(tt.token), tt.now, secret)
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("RedeemJoinToken = %q, %v; want %v", id, err, tt.want)
				}
				after, _ := s.DeviceSecretHash(ctx, "dev")
				if !bytes.Equal(before, after) {
					t.Errorf("secret hash changed on a failed redeem: %q -> %q", before, after)
				}
				return
			}
			if err != nil || id != tt.wantID {
				t.Fatalf("RedeemJoinToken = %q, %v; want %q", id, err, tt.wantID)
			}
			h, err := s.DeviceSecretHash(ctx, "dev")
			if err != nil || !bytes.Equal(h, secret) {
				t.Errorf("DeviceSecretHash = %q, %v; want %q", h, err, secret)
			}
			d, err := s.Device(ctx, "dev")
			if err != nil {
				t.Fatalf("Device: %v", err)
			}
			if !d.JoinedAt.Equal(tt.now) {
				t.Errorf("JoinedAt = %v, want %v", d.JoinedAt, tt.now)
			}
			if _, err := s.RedeemJoinToken(ctx, []byte(tt.token), tt.now, []byte("again")); !errors.Is(err, store.ErrTokenUsed) {
				t.Errorf("second RedeemJoinToken err = %v, want ErrTokenUsed", err)
			}
			if h, _ := s.DeviceSecretHash(ctx, "dev"); !bytes.Equal(h, secret) {
				t.Errorf("a refused second redeem replaced the secret: %q", h)
			}
		})
	}
}

func TestInsertPointsDeduplicates(t *testing.T) {
	s := open(t)
	ctx := t.Context()
	mustCreateDevice(t, s, "dev", nil)
	mustCreateDevice(t, s, "other", nil)

	first := []store.Point{
		numPoint("dev", 1, "temp", t0, 1),
		numPoint("dev", 2, "temp", t0.Add(time.Second), 2),
		numPoint("dev", 2, "temp", t0.Add(time.Second), 2), // duplicate within the call
		numPoint("other", 1, "temp", t0, 9),                // same seq, other device
	}
	n, err := s.InsertPoints(ctx, first, t0)
	if err != nil || n != 3 {
		t.Fatalf("first InsertPoints = %d, %v; want 3", n, err)
	}
	// Redelivery of the same batch with one new point.
	second := append(append([]store.Point{}, first...), numPoint("dev", 3, "temp", t0.Add(2*time.Second), 3))
	n, err = s.InsertPoints(ctx, second, t0)
	if err != nil || n != 1 {
		t.Fatalf("redelivered InsertPoints = %d, %v; want 1", n, err)
	}
	// A full redelivery adds nothing.
	n, err = s.InsertPoints(ctx, second, t0)
	if err != nil || n != 0 {
		t.Fatalf("second redelivery InsertPoints = %d, %v; want 0", n, err)
	}
	if got := seqs(allPoints(t, s, "dev")); !reflect.DeepEqual(got, []uint64{1, 2, 3}) {
		t.Errorf("dev seqs = %v, want [1 2 3]", got)
	}
	if got := allPoints(t, s, "other"); len(got) != 1 || got[0].Num != 9 {
		t.Errorf("other points = %+v, want one with value 9", got)
	}
	if n, err := s.InsertPoints(ctx, nil, t0); err != nil || n != 0 {
		t.Errorf("InsertPoints(nil) = %d, %v; want 0, nil", n, err)
	}
	if _, err := s.InsertPoints(ctx, []store.Point{{DeviceID: "dev", Seq: 10, Sensor: "x", TS: t0}}, t0); err == nil {
		t.Errorf("InsertPoints of a point without a value kind succeeded; want an error")
	}
	if n, _ := s.CountPoints(ctx, "dev"); n != 3 {
		t.Errorf("CountPoints after a refused batch = %d, want 3", n)
	}
}

func TestPointValuesRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		point store.Point
		want  any
	}{
		{"number", store.Point{Kind: store.KindNum, Num: 21.5}, 21.5},
		{"negative number", store.Point{Kind: store.KindNum, Num: -1e-9}, -1e-9},
		{"zero", store.Point{Kind: store.KindNum, Num: 0}, 0.0},
		{"string", store.Point{Kind: store.KindStr, Str: "open ✓"}, "open ✓"},
		{"empty string", store.Point{Kind: store.KindStr, Str: ""}, ""},
		{"true", store.Point{Kind: store.KindFlag, Flag: true}, true},
		{"false", store.Point{Kind: store.KindFlag, Flag: false}, false},
	}
	s := open(t)
	mustCreateDevice(t, s, "dev", nil)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.point
			p.DeviceID, p.Seq, p.Sensor, p.TS = "dev", uint64(i+1), "s"+fmt.Sprint(i), t0.Add(time.Duration(i)*time.Millisecond)
			if n, err := s.InsertPoints(t.Context(), []store.Point{p}, t0); err != nil || n != 1 {
				t.Fatalf("InsertPoints = %d, %v; want 1", n, err)
			}
			got, err := s.Points(t.Context(), store.PointQuery{DeviceID: "dev", Sensor: p.Sensor, Since: t0, Until: t0.Add(time.Hour), Limit: 10})
			if err != nil || len(got) != 1 {
				t.Fatalf("Points = %+v, %v; want one point", got, err)
			}
			g := got[0]
			if !g.TS.Equal(p.TS) {
				t.Errorf("TS = %v, want %v", g.TS, p.TS)
			}
			g.TS, p.TS = time.Time{}, time.Time{}
			if !reflect.DeepEqual(g, p) {
				t.Errorf("Points()[0] = %+v, want %+v", g, p)
			}
			if v := got[0].Value(); v != tt.want {
				t.Errorf("Value() = %#v, want %#v", v, tt.want)
			}
		})
	}
}

func TestPointsQuery(t *testing.T) {
	s := open(t)
	ctx := t.Context()
	mustCreateDevice(t, s, "dev", nil)
	mustCreateDevice(t, s, "other", nil)
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	// Inserted out of order; seq 5 and 6 share a timestamp with 2, and seq 4
	// is older than seq 3.
	pts := []store.Point{
		numPoint("dev", 6, "temp", at(1), 6),
		numPoint("dev", 1, "temp", at(0), 1),
		numPoint("dev", 3, "temp", at(3), 3),
		numPoint("dev", 2, "hum", at(1), 2),
		numPoint("dev", 4, "temp", at(2), 4),
		numPoint("dev", 5, "hum", at(1), 5),
		numPoint("dev", 7, "temp", at(4), 7),
		numPoint("other", 100, "temp", at(1), 100),
	}
	if n, err := s.InsertPoints(ctx, pts, t0); err != nil || n != len(pts) {
		t.Fatalf("InsertPoints = %d, %v; want %d", n, err, len(pts))
	}
	tests := []struct {
		name string
		q    store.PointQuery
		want []uint64
	}{
		{"all ordered by ts then seq", store.PointQuery{Since: at(0), Until: at(10), Limit: 100}, []uint64{1, 2, 5, 6, 4, 3, 7}},
		{"sensor", store.PointQuery{Sensor: "temp", Since: at(0), Until: at(10), Limit: 100}, []uint64{1, 6, 4, 3, 7}},
		{"other sensor", store.PointQuery{Sensor: "hum", Since: at(0), Until: at(10), Limit: 100}, []uint64{2, 5}},
		{"unknown sensor", store.PointQuery{Sensor: "nope", Since: at(0), Until: at(10), Limit: 100}, []uint64{}},
		{"since inclusive until exclusive", store.PointQuery{Since: at(1), Until: at(3), Limit: 100}, []uint64{2, 5, 6, 4}},
		{"until exclusive of its millisecond", store.PointQuery{Since: at(0), Until: at(1), Limit: 100}, []uint64{1}},
		{"empty window", store.PointQuery{Since: at(2), Until: at(2), Limit: 100}, []uint64{}},
		{"limit keeps the oldest", store.PointQuery{Since: at(0), Until: at(10), Limit: 3}, []uint64{1, 2, 5}},
		{"limit with sensor and window", store.PointQuery{Sensor: "temp", Since: at(1), Until: at(10), Limit: 2}, []uint64{6, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := tt.q
			q.DeviceID = "dev"
			got, err := s.Points(ctx, q)
			if err != nil {
				t.Fatalf("Points: %v", err)
			}
			if got == nil {
				t.Errorf("Points returned nil, want an empty slice")
			}
			if !reflect.DeepEqual(seqs(got), tt.want) {
				t.Errorf("Points seqs = %v, want %v", seqs(got), tt.want)
			}
			for _, p := range got {
				if p.DeviceID != "dev" || (q.Sensor != "" && p.Sensor != q.Sensor) {
					t.Errorf("point %+v does not match the query", p)
				}
			}
		})
	}
}

func TestPresence(t *testing.T) {
	s := open(t)
	ctx := t.Context()
	mustCreateDevice(t, s, "dev", nil)
	steps := []struct {
		name string
		p    store.Presence
		want store.Device
	}{
		{
			name: "connect",
			p:    store.Presence{Online: true, At: t0.Add(10 * time.Second), AgentVersion: "0.1.0"},
			want: store.Device{Online: true, LastSeen: t0.Add(10 * time.Second), AgentVersion: "0.1.0"},
		},
		{
			name: "disconnect keeps version",
			p:    store.Presence{Online: false, At: t0.Add(20 * time.Second)},
			want: store.Device{Online: false, LastSeen: t0.Add(20 * time.Second), AgentVersion: "0.1.0"},
		},
		{
			name: "late event does not move last_seen back",
			p:    store.Presence{Online: true, At: t0.Add(5 * time.Second), AgentVersion: "0.2.0"},
			want: store.Device{Online: true, LastSeen: t0.Add(20 * time.Second), AgentVersion: "0.2.0"},
		},
		{
			name: "reconnect without version",
			p:    store.Presence{Online: true, At: t0.Add(30 * time.Second)},
			want: store.Device{Online: true, LastSeen: t0.Add(30 * time.Second), AgentVersion: "0.2.0"},
		},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			p := st.p
			p.DeviceID = "dev"
			if err := s.SetPresence(ctx, p); err != nil {
				t.Fatalf("SetPresence: %v", err)
			}
			d, err := s.Device(ctx, "dev")
			if err != nil {
				t.Fatalf("Device: %v", err)
			}
			if d.Online != st.want.Online || !d.LastSeen.Equal(st.want.LastSeen) || d.AgentVersion != st.want.AgentVersion {
				t.Errorf("after %s: online=%v last_seen=%v version=%q; want online=%v last_seen=%v version=%q",
					st.name, d.Online, d.LastSeen, d.AgentVersion, st.want.Online, st.want.LastSeen, st.want.AgentVersion)
			}
		})
	}

	t.Run("spool report rides along and is kept when absent", func(t *testing.T) {
		sp := &store.SpoolStats{Points: 42, Bytes: 4096, Dropped: 3, Oldest: t0, ReportedAt: t0.Add(40 * time.Second)}
		if err := s.SetPresence(ctx, store.Presence{DeviceID: "dev", Online: true, At: t0.Add(40 * time.Second), Spool: sp}); err != nil {
			t.Fatal(err)
		}
		if err := s.SetPresence(ctx, store.Presence{DeviceID: "dev", Online: false, At: t0.Add(50 * time.Second)}); err != nil {
			t.Fatal(err)
		}
		d, err := s.Device(ctx, "dev")
		if err != nil {
			t.Fatal(err)
		}
		if d.Online || d.Spool == nil || *d.Spool != (store.SpoolStats{Points: 42, Bytes: 4096, Dropped: 3, Oldest: t0.UTC(), ReportedAt: t0.Add(40 * time.Second).UTC()}) {
			t.Errorf("after a report and a disconnect: online=%v spool=%+v", d.Online, d.Spool)
		}
	})

	t.Run("telemetry moves last_seen forward only", func(t *testing.T) {
		if _, err := s.InsertPoints(ctx, []store.Point{numPoint("dev", 1, "t", t0, 1)}, t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if d, _ := s.Device(ctx, "dev"); !d.LastSeen.Equal(t0.Add(time.Minute)) {
			t.Errorf("last_seen = %v, want %v", d.LastSeen, t0.Add(time.Minute))
		}
		if _, err := s.InsertPoints(ctx, []store.Point{numPoint("dev", 2, "t", t0, 1)}, t0); err != nil {
			t.Fatal(err)
		}
		if d, _ := s.Device(ctx, "dev"); !d.LastSeen.Equal(t0.Add(time.Minute)) {
			t.Errorf("last_seen moved back to %v, want %v", d.LastSeen, t0.Add(time.Minute))
		}
	})

	t.Run("telemetry moves last_seen in steps of LastSeenResolution", func(t *testing.T) {
		base := t0.Add(time.Hour)
		for i, tc := range []struct {
			seen time.Time
			want time.Time
		}{
			{base, base},
			{base.Add(sqlite.LastSeenResolution - time.Millisecond), base}, // within the resolution: not written
			{base.Add(sqlite.LastSeenResolution), base.Add(sqlite.LastSeenResolution)},
		} {
			if _, err := s.InsertPoints(ctx, []store.Point{numPoint("dev", uint64(100+i), "t", t0, 1)}, tc.seen); err != nil {
				t.Fatal(err)
			}
			if d, _ := s.Device(ctx, "dev"); !d.LastSeen.Equal(tc.want) {
				t.Errorf("step %d: last_seen = %v, want %v", i, d.LastSeen, tc.want)
			}
		}
	})
}

func TestConcurrentInsertPoints(t *testing.T) {
	s := open(t)
	ctx := t.Context()
	const (
		writers   = 8
		batches   = 20
		perBatch  = 10
		devices   = 2
		perDevice = writers * batches * perBatch
	)
	for d := range devices {
		mustCreateDevice(t, s, fmt.Sprintf("dev-%d", d), nil)
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		inserted int
		errs     []error
	)
	for w := range writers {
		wg.Go(func() {
			for b := range batches {
				var pts []store.Point
				for d := range devices {
					for i := range perBatch {
						seq := uint64(1 + (w*batches+b)*perBatch + i)
						pts = append(pts, numPoint(fmt.Sprintf("dev-%d", d), seq, "temp", t0.Add(time.Duration(seq)*time.Millisecond), float64(seq)))
					}
				}
				n, err := s.InsertPoints(ctx, pts, t0)
				mu.Lock()
				inserted += n
				if err != nil {
					errs = append(errs, err)
				}
				mu.Unlock()
			}
		})
	}
	// Readers run alongside the writers.
	for range 2 {
		wg.Go(func() {
			for range 20 {
				if _, err := s.Points(ctx, store.PointQuery{DeviceID: "dev-0", Since: t0, Until: t0.Add(time.Hour), Limit: 50}); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent InsertPoints: %v", err)
	}
	if inserted != devices*perDevice {
		t.Errorf("InsertPoints reported %d new points, want %d", inserted, devices*perDevice)
	}
	for d := range devices {
		id := fmt.Sprintf("dev-%d", d)
		if n, err := s.CountPoints(ctx, id); err != nil || n != perDevice {
			t.Errorf("CountPoints(%s) = %d, %v; want %d", id, n, err, perDevice)
		}
	}
}

// TestConcurrentDeviceLookups runs the prepared device reads from more
// goroutines than the reader pool has connections while a writer changes
// the device: every read sees a committed state, the last one the final
// state, and the pool keeps its connections instead of closing and
// reopening them.
func TestConcurrentDeviceLookups(t *testing.T) {
	s := open(t)
	ctx := t.Context()
	mustCreateDevice(t, s, "dev", map[string]string{"rev": "0"})
	mustAddToken(t, s, "dev", "tok", t0.Add(time.Hour))
	if _, err := s.RedeemJoinToken(ctx, []byte("tok"), t0, []byte("secret")); err != nil {
		t.Fatalf("RedeemJoinToken: %v", err)
	}
	const (
		readers = 16
		lookups = 100
		updates = 50
	)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	report := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	for range readers {
		wg.Go(func() {
			for range lookups {
				d, err := s.Device(ctx, "dev")
				if err != nil {
					report(fmt.Errorf("Device: %w", err))
					return
				}
				if rev := d.Labels["rev"]; d.ID != "dev" || rev == "" {
					report(fmt.Errorf("Device = %+v, want dev with a rev label", d))
					return
				}
				if h, err := s.DeviceSecretHash(ctx, "dev"); err != nil || !bytes.Equal(h, []byte("secret")) {
					report(fmt.Errorf("DeviceSecretHash = %q, %v; want secret", h, err))
					return
				}
				if _, err := s.Device(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
					report(fmt.Errorf("Device(nope) err = %v, want ErrNotFound", err))
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range updates {
			if _, err := s.UpdateDeviceLabels(ctx, "dev", map[string]string{"rev": fmt.Sprint(i + 1)}); err != nil {
				report(fmt.Errorf("UpdateDeviceLabels: %w", err))
				return
			}
		}
	})
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Device(ctx, "dev"); err != nil || d.Labels["rev"] != fmt.Sprint(updates) {
		t.Errorf("Device after the updates = %+v, %v; want rev=%d", d, err, updates)
	}
	st := sqlite.ReaderStats(s)
	if st.MaxIdleClosed != 0 || st.MaxLifetimeClosed != 0 || st.MaxIdleTimeClosed != 0 {
		t.Errorf("reader pool closed connections: %+v", st)
	}
	if st.OpenConnections > 4 {
		t.Errorf("reader pool has %d connections open, want at most 4", st.OpenConnections)
	}
}

// TestKeyLookupsHonourDoneContext checks that the reads by primary key,
// which do not watch their context while they run, still refuse to start
// with one that is done.
func TestKeyLookupsHonourDoneContext(t *testing.T) {
	s := open(t)
	mustCreateDevice(t, s, "dev", nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if d, err := s.Device(ctx, "dev"); !errors.Is(err, context.Canceled) {
		t.Errorf("Device(canceled) = %+v, %v; want context.Canceled", d, err)
	}
	if h, err := s.DeviceSecretHash(ctx, "dev"); !errors.Is(err, context.Canceled) {
		t.Errorf("DeviceSecretHash(canceled) = %q, %v; want context.Canceled", h, err)
	}
	dctx, dcancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer dcancel()
	if _, err := s.Device(dctx, "dev"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Device(past deadline) err = %v, want context.DeadlineExceeded", err)
	}
}
