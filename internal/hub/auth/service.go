package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/store"
)

// ErrBadCredentials is returned by Login for an unknown user or wrong password.
var ErrBadCredentials = errors.New("wrong user name or password")

// Users is what the auth service needs from storage.
type Users interface {
	UserPasswordHash(ctx context.Context, name string) (string, error)
	CreateUser(ctx context.Context, name, passwordHash string, now time.Time) error
}

// Service logs users in and verifies their API tokens.
type Service struct {
	users  Users
	issuer *Issuer
	// dummyHash is compared against for unknown users so that a login's
	// timing does not reveal whether the user exists.
	dummyHash string
}

// NewService returns an auth service.
func NewService(users Users, issuer *Issuer) (*Service, error) {
	dummy, err := HashPassword(RandomString("", 16))
	if err != nil {
		return nil, err
	}
	return &Service{users: users, issuer: issuer, dummyHash: dummy}, nil
}

// Login checks a user's password and returns a fresh API token.
func (s *Service) Login(ctx context.Context, user, password string) (string, time.Time, error) {
	hash, err := s.users.UserPasswordHash(ctx, user)
	switch {
	case errors.Is(err, store.ErrNotFound):
		CheckPassword(s.dummyHash, password)
		return "", time.Time{}, ErrBadCredentials
	case err != nil:
		return "", time.Time{}, fmt.Errorf("reading user %q: %w", user, err)
	case !CheckPassword(hash, password):
		return "", time.Time{}, ErrBadCredentials
	}
	return s.issuer.Issue(user)
}

// Verify returns the user an API token was issued to.
func (s *Service) Verify(token string) (string, error) { return s.issuer.Verify(token) }

// CreateUser adds a user with the given password.
func (s *Service) CreateUser(ctx context.Context, name, password string) error {
	if len(password) < 8 {
		return fmt.Errorf("password for %q: at least 8 characters", name)
	}
	h, err := HashPassword(password)
	if err != nil {
		return err
	}
	return s.users.CreateUser(ctx, name, h, time.Now())
}
