package sim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/packets"
)

// MaxSourceIPs bounds the local addresses a fleet spreads over: more than
// one per device is of no use.
const MaxSourceIPs = MaxDevices

// ParseSourceIPs parses local source addresses for the devices'
// connections. Each spec is one address ("127.0.0.2"), an inclusive range
// of addresses of one family ("127.0.0.2-127.0.0.9"), or several of those
// separated by commas. It reports every bad spec at once.
//
// The addresses exist because one source address reaches one broker
// address and port with at most as many connections as the local port
// range (net.ipv4.ip_local_port_range) holds, about 28,000 by default.
func ParseSourceIPs(specs []string) ([]netip.Addr, error) {
	var (
		addrs []netip.Addr
		errs  []error
	)
	for _, spec := range specs {
		for part := range strings.SplitSeq(spec, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			got, err := parseSourceRange(part)
			if err != nil {
				errs = append(errs, fmt.Errorf("source IPs %q: %w", part, err))
				continue
			}
			if len(addrs)+len(got) > MaxSourceIPs {
				errs = append(errs, fmt.Errorf("source IPs: more than %d addresses", MaxSourceIPs))
				return nil, errors.Join(errs...)
			}
			addrs = append(addrs, got...)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return addrs, nil
}

// parseSourceRange parses one address or one FIRST-LAST range.
func parseSourceRange(s string) ([]netip.Addr, error) {
	first, last, isRange := strings.Cut(s, "-")
	a, err := parseSourceIP(first)
	if err != nil {
		return nil, err
	}
	if !isRange {
		return []netip.Addr{a}, nil
	}
	b, err := parseSourceIP(last)
	if err != nil {
		return nil, err
	}
	if a.Is4() != b.Is4() {
		return nil, errors.New("a range must be of one address family")
	}
	if b.Less(a) {
		return nil, fmt.Errorf("range ends at %s, before it starts", b)
	}
	var addrs []netip.Addr
	for x := a; ; x = x.Next() {
		if len(addrs) == MaxSourceIPs {
			return nil, fmt.Errorf("range holds more than %d addresses", MaxSourceIPs)
		}
		addrs = append(addrs, x)
		if x == b {
			return addrs, nil
		}
	}
}

func parseSourceIP(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	a = a.Unmap()
	if err := checkSourceIP(a); err != nil {
		return netip.Addr{}, err
	}
	return a, nil
}

// checkSourceIP rejects addresses a connection cannot come from.
func checkSourceIP(a netip.Addr) error {
	if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || (a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255})) {
		return fmt.Errorf("%s is not a unicast address a connection can come from", a)
	}
	return nil
}

// dialFrom returns autopaho's AttemptConnection for a device whose TCP
// connections come from the local address src: mqtt:// and tcp:// dial
// plain TCP, the TLS schemes dial TLS as autopaho would (with tlsCfg);
// other schemes are refused.
func dialFrom(src netip.Addr, tlsCfg *tls.Config) func(context.Context, autopaho.ClientConfig, *url.URL) (net.Conn, error) {
	return func(ctx context.Context, cfg autopaho.ClientConfig, u *url.URL) (net.Conn, error) {
		// autopaho hands this func its outer context, not the one bounded
		// by ConnectTimeout, so bound the dial here.
		d := &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Timeout: cfg.ConnectTimeout}
		switch strings.ToLower(u.Scheme) {
		case "mqtt", "tcp", "":
			conn, err := d.DialContext(ctx, "tcp", u.Host)
			if err != nil {
				return nil, fmt.Errorf("dialing %s from %s: %w", u.Host, src, err)
			}
			return conn, nil
		case "ssl", "tls", "mqtts", "mqtt+ssl", "tcps":
			td := &tls.Dialer{NetDialer: d, Config: tlsCfg}
			conn, err := td.DialContext(ctx, "tcp", u.Host)
			if err != nil {
				return nil, fmt.Errorf("dialing %s from %s: %w", u.Host, src, err)
			}
			return packets.NewThreadSafeConn(conn), nil
		default:
			return nil, fmt.Errorf("source IPs work with mqtt:// and mqtts:// broker URLs, not %s://", u.Scheme)
		}
	}
}
