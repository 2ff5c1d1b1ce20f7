package registry

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Backend kinds of a BackendConfig.
const (
	KindBuiltin = "builtin"
	KindEtcd    = "etcd"
)

// DefaultEtcdPrefix is the etcd key prefix when the URL has no path.
const DefaultEtcdPrefix = "/outpost/registry/"

// BackendConfig is a parsed --registry URL.
type BackendConfig struct {
	// Kind is KindBuiltin or KindEtcd.
	Kind string
	// Endpoints are the etcd endpoints, "http://host:port".
	Endpoints []string
	// Prefix is the etcd key prefix, ending with "/".
	Prefix string
}

// ParseRegistryURL parses the hub's --registry value: "" or "builtin" for
// the built-in backend, "etcd://HOST:PORT[,HOST:PORT…][/PREFIX]" for etcd
// (PREFIX defaults to /outpost/registry/).
func ParseRegistryURL(s string) (BackendConfig, error) {
	if s == "" || s == KindBuiltin {
		return BackendConfig{Kind: KindBuiltin}, nil
	}
	rest, ok := strings.CutPrefix(s, "etcd://")
	if !ok {
		return BackendConfig{}, fmt.Errorf("%w: registry %q: want builtin or etcd://HOST:PORT[,HOST:PORT][/PREFIX]", ErrInvalid, s)
	}
	hosts, path, _ := strings.Cut(rest, "/")
	cfg := BackendConfig{Kind: KindEtcd, Prefix: DefaultEtcdPrefix}
	for h := range strings.SplitSeq(hosts, ",") {
		host, port, err := net.SplitHostPort(h)
		if err != nil || host == "" {
			return BackendConfig{}, fmt.Errorf("%w: registry %q: endpoint %q: want HOST:PORT", ErrInvalid, s, h)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return BackendConfig{}, fmt.Errorf("%w: registry %q: endpoint %q: bad port", ErrInvalid, s, h)
		}
		cfg.Endpoints = append(cfg.Endpoints, "http://"+h)
	}
	if path = strings.Trim(path, "/"); path != "" {
		if strings.ContainsAny(path, "?# ") {
			return BackendConfig{}, fmt.Errorf("%w: registry %q: bad prefix %q", ErrInvalid, s, path)
		}
		cfg.Prefix = "/" + path + "/"
	}
	return cfg, nil
}

// Open returns the backend the --registry URL names: the built-in one
// over ds, or an etcd client (which checks that etcd answers). The caller
// closes it.
func Open(ctx context.Context, url string, ds DocumentStore) (Backend, error) {
	cfg, err := ParseRegistryURL(url)
	if err != nil {
		return nil, err
	}
	switch cfg.Kind {
	case KindEtcd:
		return NewEtcdBackend(ctx, cfg.Endpoints, cfg.Prefix)
	default:
		if ds == nil {
			return nil, fmt.Errorf("registry: the built-in backend needs the hub's store")
		}
		return NewStoreBackend(ds), nil
	}
}
