package sqlite_test

import (
	"errors"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/store"
)

func TestDocuments(t *testing.T) {
	s := open(t)
	ctx := t.Context()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	if _, err := s.Document(ctx, "rollout", "r1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Document of nothing = %v, want ErrNotFound", err)
	}
	if err := s.SaveDocument(ctx, "rollout", "r1", []byte(`{}`), true, now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SaveDocument of nothing = %v, want ErrNotFound", err)
	}
	if err := s.CreateDocument(ctx, "rollout", "r1", []byte(`{"v":1}`), true, now); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateDocument(ctx, "rollout", "r1", []byte(`{"v":9}`), true, now); !errors.Is(err, store.ErrExists) {
		t.Errorf("CreateDocument twice = %v, want ErrExists", err)
	}
	if err := s.CreateDocument(ctx, "other", "r1", []byte(`{"k":"other"}`), true, now); err != nil {
		t.Errorf("the same id under another kind: %v", err)
	}
	if err := s.CreateDocument(ctx, "rollout", "r0", []byte(`{"v":0}`), true, now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveDocument(ctx, "rollout", "r1", []byte(`{"v":2}`), true, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Document(ctx, "rollout", "r1"); err != nil || string(d) != `{"v":2}` {
		t.Errorf("Document = %s, %v", d, err)
	}
	docs, err := s.Documents(ctx, "rollout", false)
	if err != nil || len(docs) != 2 || string(docs[0]) != `{"v":2}` || string(docs[1]) != `{"v":0}` {
		t.Errorf("Documents = %q, %v; want r1 then r0 (by creation)", docs, err)
	}
	// r1 ends: only r0 is still active.
	if err := s.SaveDocument(ctx, "rollout", "r1", []byte(`{"v":3}`), false, now.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if docs, err := s.Documents(ctx, "rollout", true); err != nil || len(docs) != 1 || string(docs[0]) != `{"v":0}` {
		t.Errorf("active Documents = %q, %v; want only r0", docs, err)
	}
	if docs, err := s.Documents(ctx, "rollout", false); err != nil || len(docs) != 2 {
		t.Errorf("all Documents = %q, %v; want both", docs, err)
	}
}

func TestDeleteDocument(t *testing.T) {
	s := open(t)
	ctx := t.Context()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	if err := s.DeleteDocument(ctx, "deployment", "web"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteDocument of nothing = %v, want ErrNotFound", err)
	}
	for _, kind := range []string{"deployment", "other"} {
		if err := s.CreateDocument(ctx, kind, "web", []byte(`{"k":"`+kind+`"}`), true, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteDocument(ctx, "deployment", "web"); err != nil {
		t.Fatalf("DeleteDocument: %v", err)
	}
	if _, err := s.Document(ctx, "deployment", "web"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Document after delete = %v, want ErrNotFound", err)
	}
	if d, err := s.Document(ctx, "other", "web"); err != nil || string(d) != `{"k":"other"}` {
		t.Errorf("the same id under another kind = %s, %v; want it kept", d, err)
	}
	if docs, err := s.Documents(ctx, "deployment", false); err != nil || len(docs) != 0 {
		t.Errorf("Documents after delete = %q, %v; want none", docs, err)
	}
	// The id is free again.
	if err := s.CreateDocument(ctx, "deployment", "web", []byte(`{}`), true, now); err != nil {
		t.Errorf("CreateDocument after delete: %v", err)
	}
}
