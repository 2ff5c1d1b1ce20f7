package ota

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/outpost-edge/outpost/internal/atomicfile"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// OnlineRoles are the roles whose keys the hub holds.
var OnlineRoles = []string{metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP}

// IsOnlineRole reports whether role is targets, snapshot or timestamp.
func IsOnlineRole(role string) bool {
	for _, r := range OnlineRoles {
		if r == role {
			return true
		}
	}
	return false
}

// GenerateKey returns a new ed25519 private key.
func GenerateKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating ed25519 key: %w", err)
	}
	return priv, nil
}

// MarshalPrivateKey encodes an ed25519 key as a PKCS #8 PEM block.
func MarshalPrivateKey(k ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encoding private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePrivateKey decodes a PKCS #8 PEM ed25519 private key.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, errors.New("no PEM \"PRIVATE KEY\" block")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing PKCS #8 key: %w", err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key is a %T, want ed25519", k)
	}
	return ek, nil
}

// PublicKey returns the TUF key of k's public half and its key id.
func PublicKey(k ed25519.PrivateKey) (*metadata.Key, string, error) {
	key, err := metadata.KeyFromPublicKey(k.Public())
	if err != nil {
		return nil, "", fmt.Errorf("converting public key: %w", err)
	}
	id, err := key.ID()
	if err != nil {
		return nil, "", err
	}
	return key, id, nil
}

// Signer returns a TUF signer for k.
func Signer(k ed25519.PrivateKey) (signature.Signer, error) {
	s, err := signature.LoadSigner(k, crypto.Hash(0))
	if err != nil {
		return nil, fmt.Errorf("loading signer: %w", err)
	}
	return s, nil
}

// onlineKey is one of the hub's private keys with its id.
type onlineKey struct {
	priv ed25519.PrivateKey
	pub  *metadata.Key
	id   string
}

func (s *Service) keyPath(role string, pending bool) string {
	name := role + ".key"
	if pending {
		name = role + ".pending.key"
	}
	return filepath.Join(s.dir, "keys", name)
}

// loadKey reads a role's current or pending key; nil if there is none.
func (s *Service) loadKey(role string, pending bool) (*onlineKey, error) {
	data, err := os.ReadFile(s.keyPath(role, pending))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s key: %w", role, err)
	}
	priv, err := ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("reading %s key %s: %w", role, s.keyPath(role, pending), err)
	}
	pub, id, err := PublicKey(priv)
	if err != nil {
		return nil, err
	}
	return &onlineKey{priv: priv, pub: pub, id: id}, nil
}

// newKey generates and stores a role's current or pending key.
func (s *Service) newKey(role string, pending bool) (*onlineKey, error) {
	priv, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	pemData, err := MarshalPrivateKey(priv)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(s.keyPath(role, pending), pemData, 0o600); err != nil {
		return nil, fmt.Errorf("storing %s key: %w", role, err)
	}
	pub, id, err := PublicKey(priv)
	if err != nil {
		return nil, err
	}
	return &onlineKey{priv: priv, pub: pub, id: id}, nil
}

// OnlineKey is the public half of one of the hub's online keys.
type OnlineKey struct {
	Role    string        `json:"role"`
	KeyID   string        `json:"keyid"`
	Key     *metadata.Key `json:"key"`
	Pending bool          `json:"pending"`
}

// OnlineKeys generates the online keys that do not exist yet and returns
// their public halves. With rotate set to an online role, it also makes a
// pending key for that role (kept until a root listing it is accepted; an
// existing pending key is reused) and returns it instead of the current one.
func (s *Service) OnlineKeys(rotate string) ([]OnlineKey, error) {
	if rotate != "" && !IsOnlineRole(rotate) {
		return nil, fmt.Errorf("%w: rotate=%q: the hub holds keys of targets, snapshot and timestamp only", ErrInvalid, rotate)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]OnlineKey, 0, len(OnlineRoles))
	for _, role := range OnlineRoles {
		k, err := s.loadKey(role, false)
		if err != nil {
			return nil, err
		}
		if k == nil {
			if k, err = s.newKey(role, false); err != nil {
				return nil, err
			}
			s.logger.Info("generated online key", "role", role, "keyid", k.id)
		}
		pending := false
		if role == rotate {
			pk, err := s.loadKey(role, true)
			if err != nil {
				return nil, err
			}
			if pk == nil {
				if pk, err = s.newKey(role, true); err != nil {
					return nil, err
				}
				s.logger.Info("generated pending online key", "role", role, "keyid", pk.id)
			}
			k, pending = pk, true
		}
		out = append(out, OnlineKey{Role: role, KeyID: k.id, Key: k.pub, Pending: pending})
	}
	return out, nil
}

// signerFor returns the hub key (current or pending) whose id root lists
// for role. s.mu must be held.
func (s *Service) signerFor(root *metadata.Metadata[metadata.RootType], role string) (*onlineKey, error) {
	r := root.Signed.Roles[role]
	if r == nil {
		return nil, fmt.Errorf("%w: root has no %s role", ErrRootRejected, role)
	}
	for _, pending := range []bool{false, true} {
		k, err := s.loadKey(role, pending)
		if err != nil {
			return nil, err
		}
		if k == nil {
			continue
		}
		for _, id := range r.KeyIDs {
			if id == k.id {
				return k, nil
			}
		}
	}
	return nil, fmt.Errorf("%w: the %s role lists key(s) %v, none of which the hub holds; get the hub's keys with POST /api/v1/tuf/online-keys", ErrRootRejected, role, r.KeyIDs)
}

// promoteKeys makes a pending key current when root lists it. s.mu must be
// held.
func (s *Service) promoteKeys(root *metadata.Metadata[metadata.RootType]) error {
	for _, role := range OnlineRoles {
		pk, err := s.loadKey(role, true)
		if err != nil || pk == nil {
			if err != nil {
				return err
			}
			continue
		}
		for _, id := range root.Signed.Roles[role].KeyIDs {
			if id == pk.id {
				if err := os.Rename(s.keyPath(role, true), s.keyPath(role, false)); err != nil {
					return fmt.Errorf("promoting the new %s key: %w", role, err)
				}
				s.logger.Info("rotated online key", "role", role, "keyid", pk.id)
				break
			}
		}
	}
	return nil
}
