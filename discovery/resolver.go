package discovery

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/grpc/resolver"

	apiv1 "github.com/outpost-edge/outpost/gen/outpost/api/v1"
)

// Scheme is the gRPC target scheme the resolver answers: "outpost:///NAME".
const Scheme = "outpost"

// NewResolverBuilder returns a gRPC resolver builder for "outpost:///NAME"
// targets that resolves through c. Pass it to grpc.NewClient with
// grpc.WithResolvers; c must stay open as long as the ClientConns built on it.
//
// Query parameters of the target: tag=T (repeatable) keeps instances with
// every tag, warning=true also uses warning instances.
func NewResolverBuilder(c *Client) resolver.Builder {
	return &builder{client: c}
}

// Register registers the resolver builder of c in gRPC's global registry, so
// that any grpc.NewClient in the process resolves "outpost:///NAME" through
// c. Prefer grpc.WithResolvers(NewResolverBuilder(c)), which keeps the
// wiring explicit; call Register, if at all, once at startup, before any
// ClientConn is created (resolver.Register is not safe to call concurrently).
func Register(c *Client) {
	resolver.Register(NewResolverBuilder(c))
}

type builder struct {
	client *Client
}

var _ resolver.Builder = (*builder)(nil)

func (b *builder) Scheme() string { return Scheme }

func (b *builder) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	req, err := targetRequest(target)
	if err != nil {
		return nil, fmt.Errorf("building outpost resolver for %q: %w", target.URL.String(), err)
	}
	if b.client.closed.Load() {
		return nil, fmt.Errorf("building outpost resolver for %q: %w", target.URL.String(), ErrClosed)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &watchResolver{cancel: cancel}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		// sent is touched by this goroutine only.
		sent := false
		b.client.watch(ctx, req, func(snap []Instance) {
			sent = true
			// An error from UpdateState means the balancer rejected the
			// list (zero addresses, for one); the next snapshot replaces
			// it, and there is nothing better to send meanwhile.
			_ = cc.UpdateState(stateOf(snap))
		}, func(err error) {
			// Until a first snapshot arrives, fail RPCs fast instead of
			// letting them wait for an address list that may never come;
			// after it, keep the last list through the hub's absence.
			if !sent {
				cc.ReportError(err)
			}
		})
	}()
	return r, nil
}

// targetRequest parses "outpost:///NAME?tag=T&warning=true".
func targetRequest(target resolver.Target) (*apiv1.ResolveRequest, error) {
	name := strings.TrimPrefix(target.Endpoint(), "/")
	opts := []ResolveOption{}
	q := target.URL.Query()
	if tags := q["tag"]; len(tags) > 0 {
		opts = append(opts, WithTags(tags...))
	}
	if w := q.Get("warning"); w != "" {
		ok, err := strconv.ParseBool(w)
		if err != nil {
			return nil, fmt.Errorf("warning=%q: %w", w, ErrInvalidArgument)
		}
		if ok {
			opts = append(opts, IncludeWarning())
		}
	}
	return resolveRequest(name, opts)
}

func stateOf(snap []Instance) resolver.State {
	st := resolver.State{
		Addresses: make([]resolver.Address, 0, len(snap)),
		Endpoints: make([]resolver.Endpoint, 0, len(snap)),
	}
	for _, in := range snap {
		a := resolver.Address{Addr: in.Addr()}
		st.Addresses = append(st.Addresses, a)
		st.Endpoints = append(st.Endpoints, resolver.Endpoint{Addresses: []resolver.Address{a}})
	}
	return st
}

// watchResolver is the resolver of one ClientConn: one Watch stream.
type watchResolver struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// ResolveNow does nothing: the Watch stream already pushes every change.
func (r *watchResolver) ResolveNow(resolver.ResolveNowOptions) {}

// Close stops the Watch stream and waits for its goroutine.
func (r *watchResolver) Close() {
	r.cancel()
	r.wg.Wait()
}
