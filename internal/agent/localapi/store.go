package localapi

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Buckets of state.db.
var (
	bucketState    = []byte("state")
	bucketServices = []byte("services")
)

// Limits of the apps' store.
const (
	// MaxKeyLen is the longest state key, in bytes.
	MaxKeyLen = 256
	// MaxValueBytes is the largest stored value.
	MaxValueBytes = 64 << 10
	// maxContentTypeLen bounds the Content-Type kept with a value.
	maxContentTypeLen = 255
)

// Store is state.db: the apps' key-value state and the service lookup
// cache, in a bbolt file opened on first use, so that an agent whose apps
// never use it pays nothing for it. Its methods are safe for concurrent
// use.
type Store struct {
	path string

	mu     sync.Mutex // guards db and closed
	db     *bolt.DB
	closed bool
}

// NewStore returns the store at path without opening it.
func NewStore(path string) *Store { return &Store{path: path} }

// open returns the database, opening it at the first call.
func (s *Store) open() (*bolt.DB, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.db != nil {
		return s.db, nil
	}
	db, err := bolt.Open(s.path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", s.path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketState, bucketServices} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("preparing %s: %w", s.path, err)
	}
	s.db = db
	return db, nil
}

// Close closes the file if it was opened; later calls fail with
// ErrClosed. It is safe to call twice.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.db == nil {
		return nil
	}
	db := s.db
	s.db = nil
	if err := db.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", s.path, err)
	}
	return nil
}

// ValidKey reports whether key is a usable state key: 1 to MaxKeyLen
// bytes of ASCII letters, digits, '.', '_', '-' and '/'.
func ValidKey(key string) error {
	if len(key) == 0 || len(key) > MaxKeyLen {
		return fmt.Errorf("key must be 1 to %d bytes, got %d", MaxKeyLen, len(key))
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '/') {
			return fmt.Errorf("key %q has %q at byte %d; allowed are letters, digits, '.', '_', '-' and '/'", key, c, i)
		}
	}
	return nil
}

// A stored value is its content type, a NUL byte (which no Content-Type
// holds) and the bytes as they were put.

// Get returns the value at key and its content type; ok is false when
// there is none.
func (s *Store) Get(key string) (value []byte, contentType string, ok bool, err error) {
	db, err := s.open()
	if err != nil {
		return nil, "", false, err
	}
	err = db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketState).Get([]byte(key))
		if v == nil {
			return nil
		}
		ct, body, found := bytes.Cut(v, []byte{0})
		if !found {
			return fmt.Errorf("reading state %q: corrupt record", key)
		}
		value, contentType, ok = bytes.Clone(body), string(ct), true
		return nil
	})
	return value, contentType, ok, err
}

// Put stores value with its content type at key, replacing what was there.
func (s *Store) Put(key, contentType string, value []byte) error {
	if len(value) > MaxValueBytes {
		return fmt.Errorf("value is %d bytes, the limit is %d", len(value), MaxValueBytes)
	}
	if len(contentType) > maxContentTypeLen || strings.IndexByte(contentType, 0) >= 0 {
		return errors.New("unusable Content-Type")
	}
	db, err := s.open()
	if err != nil {
		return err
	}
	rec := make([]byte, 0, len(contentType)+1+len(value))
	rec = append(append(append(rec, contentType...), 0), value...)
	return db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketState).Put([]byte(key), rec)
	})
}

// Delete removes key; a missing key is not an error.
func (s *Store) Delete(key string) error {
	db, err := s.open()
	if err != nil {
		return err
	}
	return db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketState).Delete([]byte(key))
	})
}

// List returns the keys that start with prefix, in byte order.
func (s *Store) List(prefix string) ([]string, error) {
	db, err := s.open()
	if err != nil {
		return nil, err
	}
	keys := []string{}
	err = db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketState).Cursor()
		p := []byte(prefix)
		for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
			keys = append(keys, string(k))
		}
		return nil
	})
	return keys, err
}

// cacheGet returns the cached service answer at key, nil if none.
func (s *Store) cacheGet(key string) ([]byte, error) {
	db, err := s.open()
	if err != nil {
		return nil, err
	}
	var out []byte
	err = db.View(func(tx *bolt.Tx) error {
		out = bytes.Clone(tx.Bucket(bucketServices).Get([]byte(key)))
		return nil
	})
	return out, err
}

// cachePut stores a service answer at key.
func (s *Store) cachePut(key string, value []byte) error {
	db, err := s.open()
	if err != nil {
		return err
	}
	return db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketServices).Put([]byte(key), value)
	})
}
