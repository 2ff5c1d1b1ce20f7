// Package discovery is the Go client of the Outpost hub's service registry.
//
// It owns three things: a [Client] that talks to the hub's RegistryService
// over gRPC (resolve, watch, register, keep alive, deregister), the public
// [Instance] and [Registration] types that stand in for the wire messages, and
// a gRPC name resolver for the "outpost" scheme so that an ordinary
// grpc.ClientConn can dial a registered service by name:
//
//	c, err := discovery.New("hub.example:9090", token)
//	conn, err := grpc.NewClient("outpost:///echo",
//		grpc.WithResolvers(discovery.NewResolverBuilder(c)),
//		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
//		grpc.WithTransportCredentials(insecure.NewCredentials()))
//
// The resolver keeps one Watch stream open per ClientConn and hands every
// snapshot the hub sends to gRPC, so an instance that turns critical or is
// deregistered leaves the address list and a new one joins it without a
// redial. A target may filter by tag ("outpost:///echo?tag=v2", repeatable)
// and may ask for warning instances too ("outpost:///echo?warning=true").
// Only passing instances (and warning ones when asked) are ever used, even if
// the hub sent others.
//
// Round robin also protects callers between a failure and the registry
// noticing it: with the round_robin policy gRPC only picks subchannels that
// are READY, so an instance whose connection fails (the process died, the
// port closed) is skipped at once, typically within a few milliseconds,
// long before its TTL lapses or the hub's check marks it critical. The
// registry update then removes it for good. Calls already in flight on the
// broken connection still fail and are the caller's to retry. With the
// default pick_first policy there is no such fast failover: use round_robin.
//
// When the Watch stream breaks (hub restart, network loss) the resolver keeps
// the last address list and reconnects with a backoff from 100 ms to 5 s; the
// first snapshot after reconnecting replaces the list.
//
// Authentication is the hub's bearer token (the JWT `outpost login` stores),
// sent as "authorization: Bearer <token>" metadata on every registry call.
// Connections are plaintext unless [WithTLS] is given.
//
// The package is public API: it must not import anything under internal/;
// it depends only on the generated registry code in gen/outpost/api/v1, gRPC and
// the standard library.
package discovery
