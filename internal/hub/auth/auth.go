package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"
)

// ErrInvalidToken is returned for any API token that does not verify.
var ErrInvalidToken = errors.New("invalid or expired token")

// HashPassword returns a bcrypt hash of password.
func HashPassword(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("hashing password: %w", err)
	}
	return string(h), nil
}

// CheckPassword reports whether password matches hash.
func CheckPassword(hash, password string) bool {
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
}

// RandomString returns n random bytes, URL-safe base64 encoded, after prefix.
func RandomString(prefix string, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err)) // never happens on Linux; see crypto/rand docs
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// NewJoinToken returns a fresh one-time join token.
func NewJoinToken() string { return RandomString("ojt_", 24) }

// NewDeviceSecret returns a fresh MQTT password for a device.
func NewDeviceSecret() string { return RandomString("", 32) }

// HashSecret hashes a high-entropy secret (device secret or join token) for
// storage. SHA-256 suffices: these are random, not user-chosen.
func HashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// SecretMatches reports in constant time whether secret hashes to hash.
func SecretMatches(hash []byte, secret string) bool {
	return subtle.ConstantTimeCompare(hash, HashSecret(secret)) == 1
}

// Issuer issues and verifies API tokens (JWT, HS256). It is safe for
// concurrent use.
type Issuer struct {
	key    []byte
	ttl    time.Duration
	now    func() time.Time
	parser *jwt.Parser

	// verifiedMu guards verified: the tokens Verify has accepted, by their
	// whole text, so that a client sending the same token with every
	// request costs one parse and signature check, not one per request.
	verifiedMu sync.RWMutex
	verified   map[string]verifiedToken
}

// verifiedToken is what Verify needs to accept a token it has verified
// before: the claims that depend on the time. Signature, algorithm, issuer
// and subject do not change with it, as the key is the token's text.
type verifiedToken struct {
	subject string
	exp     time.Time
	nbf     time.Time // zero: the token has no nbf
}

// maxVerified bounds the tokens an Issuer remembers; a busy hub serves far
// fewer sessions at a time.
const maxVerified = 1024

// NewIssuer returns an Issuer signing with key; tokens live for ttl.
func NewIssuer(key []byte, ttl time.Duration) *Issuer {
	i := &Issuer{key: key, ttl: ttl, now: time.Now, verified: make(map[string]verifiedToken)}
	i.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(issuerName),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return i.now() }),
	)
	return i
}

const issuerName = "outpost-hub"

// Issue returns a token for user and its expiry.
func (i *Issuer) Issue(user string) (string, time.Time, error) {
	now := i.now()
	exp := now.Add(i.ttl).Truncate(time.Second)
	claims := jwt.RegisteredClaims{
		Issuer:    issuerName,
		Subject:   user,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(exp),
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(i.key)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("signing token: %w", err)
	}
	return s, exp, nil
}

// Verify checks a token's signature, algorithm, issuer and expiry, and
// returns its subject (the user name).
//
// A token it accepted before is accepted again without parsing while the
// clock is still within its nbf and exp, the checks golang-jwt makes of
// RegisteredClaims that depend on the time; any other token, or one whose
// time is up, goes through the full check.
func (i *Issuer) Verify(token string) (string, error) {
	i.verifiedMu.RLock()
	v, ok := i.verified[token]
	i.verifiedMu.RUnlock()
	if ok {
		if now := i.now(); now.Before(v.exp) && !now.Before(v.nbf) {
			return v.subject, nil
		}
	}
	var claims jwt.RegisteredClaims
	if _, err := i.parser.ParseWithClaims(token, &claims, i.keyFunc); err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if claims.Subject == "" {
		return "", fmt.Errorf("%w: no subject", ErrInvalidToken)
	}
	v = verifiedToken{subject: claims.Subject, exp: claims.ExpiresAt.Time}
	if claims.NotBefore != nil {
		v.nbf = claims.NotBefore.Time
	}
	i.remember(token, v)
	return claims.Subject, nil
}

func (i *Issuer) keyFunc(*jwt.Token) (any, error) { return i.key, nil }

// remember adds a verified token to i.verified. When that is full, it first
// drops the expired tokens and, if that is not enough, all of them.
func (i *Issuer) remember(token string, v verifiedToken) {
	i.verifiedMu.Lock()
	defer i.verifiedMu.Unlock()
	if len(i.verified) >= maxVerified {
		now := i.now()
		for t, old := range i.verified {
			if !now.Before(old.exp) {
				delete(i.verified, t)
			}
		}
		if len(i.verified) >= maxVerified {
			clear(i.verified)
		}
	}
	i.verified[token] = v
}
