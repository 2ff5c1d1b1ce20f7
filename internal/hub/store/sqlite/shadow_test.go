package sqlite_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"

	"github.com/outpost-edge/outpost/internal/hub/store"
	"github.com/outpost-edge/outpost/internal/hub/store/sqlite"
)

// bump returns an UpdateShadow function that stores doc at the next version.
func bump(doc string) func(store.Shadow, bool) (store.Shadow, error) {
	return func(cur store.Shadow, _ bool) (store.Shadow, error) {
		return store.Shadow{Version: cur.Version + 1, Doc: []byte(doc), UpdatedAt: t0}, nil
	}
}

func mustShadow(t *testing.T, s *sqlite.Store, id, name string) store.Shadow {
	t.Helper()
	sh, err := s.Shadow(t.Context(), id, name)
	if err != nil {
		t.Fatalf("Shadow(%s, %q): %v", id, name, err)
	}
	return sh
}

func TestShadows(t *testing.T) {
	s := open(t)
	ctx := t.Context()
	mustCreateDevice(t, s, "pump-7", nil)

	if _, err := s.Shadow(ctx, "pump-7", ""); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Shadow before any update: %v, want ErrNotFound", err)
	}
	var sawFound []bool
	record := func(doc string) func(store.Shadow, bool) (store.Shadow, error) {
		return func(cur store.Shadow, found bool) (store.Shadow, error) {
			sawFound = append(sawFound, found)
			return bump(doc)(cur, found)
		}
	}
	if _, err := s.UpdateShadow(ctx, "pump-7", "", record(`{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateShadow(ctx, "pump-7", "", record(`{"v":2}`)); err != nil {
		t.Fatal(err)
	}
	if sh := mustShadow(t, s, "pump-7", ""); sh.Version != 2 || string(sh.Doc) != `{"v":2}` || sh.Deleted || !sh.UpdatedAt.Equal(t0) {
		t.Errorf("stored = %+v", sh)
	}
	if len(sawFound) != 2 || sawFound[0] || !sawFound[1] {
		t.Errorf("fn saw found = %v, want [false true]", sawFound)
	}

	// An error from fn aborts; a version that does not grow is refused.
	boom := errors.New("boom")
	if _, err := s.UpdateShadow(ctx, "pump-7", "", func(store.Shadow, bool) (store.Shadow, error) { return store.Shadow{}, boom }); !errors.Is(err, boom) {
		t.Errorf("fn error: got %v", err)
	}
	if _, err := s.UpdateShadow(ctx, "pump-7", "", func(cur store.Shadow, _ bool) (store.Shadow, error) {
		return store.Shadow{Version: cur.Version, Doc: []byte(`{}`)}, nil
	}); err == nil {
		t.Error("an update that keeps the version was stored")
	}
	if sh := mustShadow(t, s, "pump-7", ""); sh.Version != 2 {
		t.Errorf("version after refused updates = %d, want 2", sh.Version)
	}

	// Named shadows are separate; an unknown device has none.
	if _, err := s.UpdateShadow(ctx, "pump-7", "config", bump(`{"named":true}`)); err != nil {
		t.Fatal(err)
	}
	if sh := mustShadow(t, s, "pump-7", "config"); sh.Version != 1 {
		t.Errorf("named shadow version = %d, want 1", sh.Version)
	}
	if _, err := s.UpdateShadow(ctx, "ghost", "", bump(`{}`)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("update for an unknown device: %v, want ErrNotFound", err)
	}

	// Delete keeps a tombstone with the version; the next update continues.
	v, err := s.DeleteShadow(ctx, "pump-7", "", t0)
	if err != nil || v != 2 {
		t.Fatalf("DeleteShadow = %d, %v; want 2", v, err)
	}
	if sh := mustShadow(t, s, "pump-7", ""); !sh.Deleted || sh.Version != 2 || len(sh.Doc) != 0 {
		t.Errorf("tombstone = %+v", sh)
	}
	if _, err := s.DeleteShadow(ctx, "pump-7", "", t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
	if _, err := s.DeleteShadow(ctx, "pump-7", "never", t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleting a shadow that never existed: %v, want ErrNotFound", err)
	}
	if _, err := s.UpdateShadow(ctx, "pump-7", "", func(cur store.Shadow, found bool) (store.Shadow, error) {
		if !found || !cur.Deleted || cur.Version != 2 {
			t.Errorf("fn after delete saw %+v, found %v", cur, found)
		}
		return bump(`{"v":3}`)(cur, found)
	}); err != nil {
		t.Fatal(err)
	}
	if sh := mustShadow(t, s, "pump-7", ""); sh.Deleted || sh.Version != 3 {
		t.Errorf("after re-creation = %+v", sh)
	}

	// Deleting the device deletes its shadows.
	if err := s.DeleteDevice(ctx, "pump-7"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"", "config"} {
		if _, err := s.Shadow(ctx, "pump-7", name); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("shadow %q after DeleteDevice: %v, want ErrNotFound", name, err)
		}
	}
	// A device registered again under the same id starts afresh.
	mustCreateDevice(t, s, "pump-7", nil)
	if sh, err := s.UpdateShadow(ctx, "pump-7", "", bump(`{}`)); err != nil || sh.Version != 1 {
		t.Errorf("shadow of the re-registered device = %+v, %v; want version 1", sh, err)
	}
}

// TestConcurrentShadowUpdates: read-modify-write updates racing on one
// shadow each see the latest version, so none is lost.
func TestConcurrentShadowUpdates(t *testing.T) {
	s := open(t)
	mustCreateDevice(t, s, "pump-7", nil)
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.UpdateShadow(t.Context(), "pump-7", "", func(cur store.Shadow, _ bool) (store.Shadow, error) {
				var ids []int
				if len(cur.Doc) > 0 {
					if err := json.Unmarshal(cur.Doc, &ids); err != nil {
						return store.Shadow{}, err
					}
				}
				doc, _ := json.Marshal(append(ids, i))
				return store.Shadow{Version: cur.Version + 1, Doc: doc, UpdatedAt: t0}, nil
			})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	sh := mustShadow(t, s, "pump-7", "")
	var ids []int
	if err := json.Unmarshal(sh.Doc, &ids); err != nil {
		t.Fatal(err)
	}
	sort.Ints(ids)
	if sh.Version != n || len(ids) != n || fmt.Sprint(ids[:3]) != "[0 1 2]" || ids[n-1] != n-1 {
		t.Errorf("version %d with %d updates recorded, want %d of each: %v", sh.Version, len(ids), n, ids)
	}
}
