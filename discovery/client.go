package discovery

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	apiv1 "github.com/outpost-edge/outpost/gen/outpost/api/v1"
)

// Client talks to the hub's service registry. It is safe for concurrent use;
// one Client can serve any number of resolvers and watches.
type Client struct {
	conn   *grpc.ClientConn
	rpc    apiv1.RegistryServiceClient
	logger *slog.Logger

	// closed is set by Close; calls after it return ErrClosed.
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// Option configures New.
type Option func(*options)

type options struct {
	tls      *tls.Config
	dialOpts []grpc.DialOption
	logger   *slog.Logger
}

// WithTLS dials the hub over TLS with cfg instead of plaintext. The bearer
// token is then only ever sent over the encrypted connection.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) { o.tls = cfg }
}

// WithDialOptions adds gRPC dial options, applied after the client's own
// (so they may override the transport credentials, for instance).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dialOpts = append(o.dialOpts, opts...) }
}

// WithLogger sets the logger for reconnects and failed renewals; the default
// discards everything.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// New returns a client of the registry of the hub whose gRPC API listens on
// hubAddr ("host:port"), authenticating with token (the JWT `outpost login`
// stores; empty sends none). It does not connect yet: the first call does.
func New(hubAddr, token string, opts ...Option) (*Client, error) {
	if hubAddr == "" {
		return nil, fmt.Errorf("creating discovery client: empty hub address: %w", ErrInvalidArgument)
	}
	o := options{}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	dial := []grpc.DialOption{}
	if o.tls != nil {
		dial = append(dial, grpc.WithTransportCredentials(credentials.NewTLS(o.tls)))
	} else {
		dial = append(dial, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if token != "" {
		dial = append(dial, grpc.WithPerRPCCredentials(bearerToken{token: token, secure: o.tls != nil}))
	}
	dial = append(dial, o.dialOpts...)
	conn, err := grpc.NewClient(hubAddr, dial...)
	if err != nil {
		return nil, fmt.Errorf("creating discovery client for %s: %w", hubAddr, err)
	}
	return &Client{
		conn:   conn,
		rpc:    apiv1.NewRegistryServiceClient(conn),
		logger: o.logger.With("component", "discovery"),
	}, nil
}

// Close closes the connection to the hub. Watches and resolvers built on the
// client stop receiving updates (cancel their contexts, close their
// ClientConns). Close is safe to call more than once.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		if err := c.conn.Close(); err != nil {
			c.closeErr = fmt.Errorf("closing discovery client: %w", err)
		}
	})
	return c.closeErr
}

// bearerToken is the per-RPC credential carrying the hub's JWT.
type bearerToken struct {
	token string
	// secure is true on TLS connections. gRPC refuses per-RPC credentials
	// that require transport security on a plaintext connection, so on one
	// (a lab hub, a loopback address) the token is sent in clear, which is
	// the caller's choice by not passing WithTLS.
	secure bool
}

var _ credentials.PerRPCCredentials = bearerToken{}

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearerToken) RequireTransportSecurity() bool { return b.secure }
