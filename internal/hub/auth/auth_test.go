package auth

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/outpost-edge/outpost/internal/hub/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	testKey  = []byte("0123456789abcdef0123456789abcdef")
	otherKey = []byte("fedcba9876543210fedcba9876543210")
	t0       = time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)
)

// fixedIssuer returns an Issuer whose clock reads *now.
func fixedIssuer(key []byte, ttl time.Duration, now *time.Time) *Issuer {
	i := NewIssuer(key, ttl)
	i.now = func() time.Time { return *now }
	return i
}

func TestPasswords(t *testing.T) {
	h, err := HashPassword("correct horse")
	if err != nil {
		t.Fatalf("HashPassword: %v", err)
	}
	if h == "correct horse" || !strings.HasPrefix(h, "$2") {
		t.Fatalf("HashPassword = %q, want a bcrypt hash", h)
	}
	h2, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if h == h2 {
		t.Errorf("two hashes of the same password are equal; want salted hashes")
	}
	tests := []struct {
		name     string
		hash     string
		password string
		want     bool
	}{
		{"right", h, "correct horse", true},
		{"right, second hash", h2, "correct horse", true},
		{"wrong", h, "correct horse!", false},
		{"case", h, "Correct horse", false},
		{"empty", h, "", false},
		{"not a hash", "plain", "plain", false},
		{"empty hash", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CheckPassword(tt.hash, tt.password); got != tt.want {
				t.Errorf("CheckPassword(%q, %q) = %v, want %v", tt.hash, tt.password, got, tt.want)
			}
		})
	}
}

func TestSecrets(t *testing.T) {
	tok := NewJoinToken()
	if !strings.HasPrefix(tok, "ojt_") || len(tok) < 4+32 {
		t.Errorf("NewJoinToken = %q, want ojt_ and 32 base64 characters", tok)
	}
	if NewJoinToken() == tok {
		t.Errorf("two join tokens are equal")
	}
	sec := NewDeviceSecret()
	if len(sec) < 40 || NewDeviceSecret() == sec {
		t.Errorf("NewDeviceSecret = %q, want 43 random characters, different each time", sec)
	}
	h := HashSecret(sec)
	if len(h) != 32 {
		t.Fatalf("HashSecret length = %d, want 32", len(h))
	}
	tests := []struct {
		name   string
		hash   []byte
		secret string
		want   bool
	}{
		{"match", h, sec, true},
		{"other secret", h, sec + "x", false},
		{"empty secret", h, "", false},
		{"truncated hash", h[:31], sec, false},
		{"nil hash", nil, sec, false},
		{"empty matches empty hash", HashSecret(""), "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SecretMatches(tt.hash, tt.secret); got != tt.want {
				t.Errorf("SecretMatches = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestIssuerRoundTrip(t *testing.T) {
	now := t0
	iss := fixedIssuer(testKey, time.Hour, &now)
	tok, exp, err := iss.Issue("admin")
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	if !exp.Equal(t0.Add(time.Hour)) {
		t.Errorf("expiry = %v, want %v", exp, t0.Add(time.Hour))
	}
	if user, err := iss.Verify(tok); err != nil || user != "admin" {
		t.Fatalf("Verify = %q, %v; want admin", user, err)
	}
	// A second issuer with the same key (e.g. after a restart) accepts it too.
	if user, err := fixedIssuer(testKey, time.Hour, &now).Verify(tok); err != nil || user != "admin" {
		t.Errorf("Verify by another issuer with the same key = %q, %v; want admin", user, err)
	}
	now = t0.Add(time.Hour - time.Second)
	if _, err := iss.Verify(tok); err != nil {
		t.Errorf("Verify a second before expiry: %v", err)
	}
}

// signed returns a token with the given claims, signed with key by method.
func signed(t *testing.T, method jwt.SigningMethod, key any, claims jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatalf("signing: %v", err)
	}
	return s
}

func TestIssuerRejects(t *testing.T) {
	now := t0
	iss := fixedIssuer(testKey, time.Hour, &now)
	good, _, err := iss.Issue("admin")
	if err != nil {
		t.Fatal(err)
	}
	valid := jwt.RegisteredClaims{
		Issuer:    issuerName,
		Subject:   "admin",
		IssuedAt:  jwt.NewNumericDate(t0),
		ExpiresAt: jwt.NewNumericDate(t0.Add(time.Hour)),
	}
	with := func(f func(c *jwt.RegisteredClaims)) jwt.RegisteredClaims {
		c := valid
		f(&c)
		return c
	}
	parts := strings.Split(good, ".")
	// tampered swaps the payload for one naming another user, keeping the
	// original signature.
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	evil := strings.Replace(string(payload), `"sub":"admin"`, `"sub":"root"`, 1)
	if evil == string(payload) {
		t.Fatalf("payload %s has no admin subject to tamper with", payload)
	}
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(evil)) + "." + parts[2]

	tests := []struct {
		name  string
		token string
		now   time.Time
	}{
		{"expired", good, t0.Add(time.Hour + time.Second)},
		{"expired long ago", good, t0.Add(30 * 24 * time.Hour)},
		{"other key", signed(t, jwt.SigningMethodHS256, otherKey, valid), t0},
		{"alg none", signed(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, valid), t0},
		{"alg none with the issuer's signature", strings.Join([]string{
			base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)), parts[1], parts[2]}, "."), t0},
		{"HS512 with the right key", signed(t, jwt.SigningMethodHS512, testKey, valid), t0},
		{"tampered payload", tampered, t0},
		{"signature stripped", parts[0] + "." + parts[1] + ".", t0},
		{"wrong issuer", signed(t, jwt.SigningMethodHS256, testKey, with(func(c *jwt.RegisteredClaims) { c.Issuer = "someone-else" })), t0},
		{"no expiry", signed(t, jwt.SigningMethodHS256, testKey, with(func(c *jwt.RegisteredClaims) { c.ExpiresAt = nil })), t0},
		{"no subject", signed(t, jwt.SigningMethodHS256, testKey, with(func(c *jwt.RegisteredClaims) { c.Subject = "" })), t0},
		{"garbage", "not.a.jwt", t0},
		{"empty", "", t0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now = tt.now
			user, err := iss.Verify(tt.token)
			if !errors.Is(err, ErrInvalidToken) {
				t.Errorf("Verify = %q, %v; want ErrInvalidToken", user, err)
			}
			if user != "" {
				t.Errorf("Verify returned user %q with an error", user)
			}
		})
	}
}

// TestIssuerRemembersOnlyWhileValid checks that a token Verify accepted
// before is still held to its time claims when it is accepted again
// without parsing.
func TestIssuerRemembersOnlyWhileValid(t *testing.T) {
	now := t0
	iss := fixedIssuer(testKey, time.Hour, &now)
	good, _, err := iss.Issue("admin")
	if err != nil {
		t.Fatal(err)
	}
	later := signed(t, jwt.SigningMethodHS256, testKey, jwt.RegisteredClaims{
		Issuer:    issuerName,
		Subject:   "ops",
		NotBefore: jwt.NewNumericDate(t0.Add(10 * time.Minute)),
		ExpiresAt: jwt.NewNumericDate(t0.Add(time.Hour)),
	})
	steps := []struct {
		name     string
		now      time.Time
		token    string
		wantUser string // empty: rejected
	}{
		{"fresh", t0, good, "admin"},
		{"again", t0.Add(time.Minute), good, "admin"},
		{"a second before expiry", t0.Add(time.Hour - time.Second), good, "admin"},
		{"at expiry", t0.Add(time.Hour), good, ""},
		{"after expiry", t0.Add(2 * time.Hour), good, ""},
		{"before nbf", t0, later, ""},
		{"at nbf", t0.Add(10 * time.Minute), later, "ops"},
		{"clock back before nbf", t0.Add(9 * time.Minute), later, ""},
		{"after nbf again", t0.Add(11 * time.Minute), later, "ops"},
		{"nbf token expired", t0.Add(time.Hour), later, ""},
	}
	for _, st := range steps {
		now = st.now
		user, err := iss.Verify(st.token)
		if st.wantUser == "" {
			if !errors.Is(err, ErrInvalidToken) || user != "" {
				t.Errorf("%s: Verify = %q, %v; want ErrInvalidToken", st.name, user, err)
			}
			continue
		}
		if err != nil || user != st.wantUser {
			t.Errorf("%s: Verify = %q, %v; want %q", st.name, user, err, st.wantUser)
		}
	}
}

// TestIssuerRemembersBounded checks that the remembered tokens stay within
// maxVerified and that a forgotten token still verifies.
func TestIssuerRemembersBounded(t *testing.T) {
	now := t0
	iss := fixedIssuer(testKey, time.Hour, &now)
	var first string
	for n := range maxVerified + 10 {
		now = t0.Add(time.Duration(n) * time.Second)
		tok, _, err := iss.Issue("admin")
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			first = tok
		}
		if _, err := iss.Verify(tok); err != nil {
			t.Fatalf("Verify token %d: %v", n, err)
		}
		iss.verifiedMu.RLock()
		size := len(iss.verified)
		iss.verifiedMu.RUnlock()
		if size > maxVerified {
			t.Fatalf("after %d tokens %d are remembered, want at most %d", n+1, size, maxVerified)
		}
	}
	if user, err := iss.Verify(first); err != nil || user != "admin" {
		t.Errorf("Verify of the first token = %q, %v; want admin", user, err)
	}
}

// TestIssuerConcurrentVerify runs Verify from many goroutines, for the race
// detector, on one token, on fresh ones and on a forged one.
func TestIssuerConcurrentVerify(t *testing.T) {
	iss := NewIssuer(testKey, time.Hour)
	shared, _, err := iss.Issue("admin")
	if err != nil {
		t.Fatal(err)
	}
	forged := signed(t, jwt.SigningMethodHS256, otherKey, jwt.RegisteredClaims{
		Issuer: issuerName, Subject: "root", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for range 50 {
				if user, err := iss.Verify(shared); err != nil || user != "admin" {
					t.Errorf("Verify(shared) = %q, %v", user, err)
					return
				}
				if user, err := iss.Verify(forged); err == nil {
					t.Errorf("Verify(forged) = %q, nil; want an error", user)
					return
				}
			}
			tok, _, err := iss.Issue(fmt.Sprint("user", g))
			if err != nil {
				t.Error(err)
				return
			}
			if user, err := iss.Verify(tok); err != nil || user != fmt.Sprint("user", g) {
				t.Errorf("Verify(own) = %q, %v", user, err)
			}
		})
	}
	wg.Wait()
}

// fakeUsers is an in-memory Users.
type fakeUsers struct {
	mu     sync.Mutex
	hashes map[string]string
	err    error // returned by UserPasswordHash when set
}

func (f *fakeUsers) UserPasswordHash(_ context.Context, name string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return "", f.err
	}
	h, ok := f.hashes[name]
	if !ok {
		return "", store.ErrNotFound
	}
	return h, nil
}

func (f *fakeUsers) CreateUser(_ context.Context, name, hash string, _ time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.hashes[name]; ok {
		return store.ErrExists
	}
	f.hashes[name] = hash
	return nil
}

func TestServiceLogin(t *testing.T) {
	users := &fakeUsers{hashes: map[string]string{}}
	svc, err := NewService(users, NewIssuer(testKey, time.Hour))
	if err != nil {
		t.Fatalf("NewService: %v", err)
	}
	ctx := t.Context()
	if err := svc.CreateUser(ctx, "admin", "short"); err == nil {
		t.Errorf("CreateUser with a 5-character password succeeded; want an error")
	}
	if err := svc.CreateUser(ctx, "admin", "s3cret-pass"); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	if users.hashes["admin"] == "s3cret-pass" {
		t.Fatalf("CreateUser stored the password in clear")
	}
	if err := svc.CreateUser(ctx, "admin", "another-pass"); !errors.Is(err, store.ErrExists) {
		t.Errorf("duplicate CreateUser err = %v, want ErrExists", err)
	}

	tests := []struct {
		name     string
		user     string
		password string
		storeErr error
		want     error
	}{
		{"ok", "admin", "s3cret-pass", nil, nil},
		{"wrong password", "admin", "s3cret-pasS", nil, ErrBadCredentials},
		{"empty password", "admin", "", nil, ErrBadCredentials},
		{"unknown user", "root", "s3cret-pass", nil, ErrBadCredentials},
		{"store failure", "admin", "s3cret-pass", errors.New("disk on fire"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			users.mu.Lock()
			users.err = tt.storeErr
			users.mu.Unlock()
			tok, exp, err := svc.Login(ctx, tt.user, tt.password)
			switch {
			case tt.storeErr != nil:
				if err == nil || !errors.Is(err, tt.storeErr) || errors.Is(err, ErrBadCredentials) {
					t.Errorf("Login err = %v, want the store's error wrapped, not ErrBadCredentials", err)
				}
			case tt.want != nil:
				if !errors.Is(err, tt.want) || tok != "" {
					t.Errorf("Login = %q, %v; want %v and no token", tok, err, tt.want)
				}
			default:
				if err != nil {
					t.Fatalf("Login: %v", err)
				}
				if time.Until(exp) <= 0 || time.Until(exp) > time.Hour {
					t.Errorf("expiry %v is not within the next hour", exp)
				}
				if user, err := svc.Verify(tok); err != nil || user != tt.user {
					t.Errorf("Verify(login token) = %q, %v; want %q", user, err, tt.user)
				}
			}
		})
	}
}
