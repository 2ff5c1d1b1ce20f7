package sim

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

func TestParseSourceIPs(t *testing.T) {
	addrs := func(ss ...string) []netip.Addr {
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		specs []string
		want  []netip.Addr
		err   string
	}{
		{"none", nil, nil, ""},
		{"one", []string{"127.0.0.2"}, addrs("127.0.0.2"), ""},
		{"range", []string{"127.0.0.2-127.0.0.4"}, addrs("127.0.0.2", "127.0.0.3", "127.0.0.4"), ""},
		{"range across an octet", []string{"127.0.0.255-127.0.1.1"}, addrs("127.0.0.255", "127.0.1.0", "127.0.1.1"), ""},
		{"range of one", []string{"127.0.0.7-127.0.0.7"}, addrs("127.0.0.7"), ""},
		{"list and repeated flag", []string{"127.0.0.2, 127.0.0.5-127.0.0.6", "::1"}, addrs("127.0.0.2", "127.0.0.5", "127.0.0.6", "::1"), ""},
		{"IPv4-mapped is IPv4", []string{"::ffff:127.0.0.2-127.0.0.3"}, addrs("127.0.0.2", "127.0.0.3"), ""},
		{"IPv6 range", []string{"fd00::1-fd00::2"}, addrs("fd00::1", "fd00::2"), ""},
		{"not an address", []string{"127.0.0.x"}, nil, `"127.0.0.x" is not an IP address`},
		{"shorthand range", []string{"127.0.0.2-9"}, nil, `"9" is not an IP address`},
		{"backwards", []string{"127.0.0.9-127.0.0.2"}, nil, "range ends at 127.0.0.2, before it starts"},
		{"mixed families", []string{"127.0.0.1-::1"}, nil, "one address family"},
		{"unspecified", []string{"0.0.0.0"}, nil, "0.0.0.0 is not a unicast address"},
		{"multicast", []string{"224.0.0.1"}, nil, "224.0.0.1 is not a unicast address"},
		{"too many", []string{"10.0.0.0-10.255.255.255"}, nil, "more than 100000 addresses"},
		{"every problem at once", []string{"x,127.0.0.3-127.0.0.1"}, nil, `"x" is not an IP address`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSourceIPs(tc.specs)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	_, err := ParseSourceIPs([]string{"x,127.0.0.3-127.0.0.1"})
	if err == nil || !strings.Contains(err.Error(), "before it starts") {
		t.Errorf("err = %v, want both problems reported", err)
	}
}

func TestValidateSourceIPs(t *testing.T) {
	o := Options{Devices: 1, SourceIPs: []netip.Addr{netip.MustParseAddr("127.0.0.2"), {}, netip.MustParseAddr("0.0.0.0")}}
	err := o.Validate()
	if err == nil || strings.Count(err.Error(), "source IP:") != 2 {
		t.Errorf("err = %v, want the invalid and the unspecified address reported", err)
	}
}

// TestDeviceConnectsFromSourceIP starts devices against a plain listener
// and checks that each one's connection comes from its source address,
// round-robin by device index: the listener reads the CONNECT packet to
// tell the devices apart.
func TestDeviceConnectsFromSourceIP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		from = map[string]string{} // client id → remote IP
		all  = make(chan struct{})
	)
	const devices = 3
	var wg sync.WaitGroup
	defer func() { ln.Close(); wg.Wait() }()
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				cp, err := packets.ReadPacket(conn)
				if err != nil {
					return
				}
				c, ok := cp.Content.(*packets.Connect)
				if !ok {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if _, seen := from[c.ClientID]; !seen {
					from[c.ClientID] = conn.RemoteAddr().(*net.TCPAddr).IP.String()
					if len(from) == devices {
						close(all)
					}
				}
			})
		}
	})

	o := Options{Devices: devices, SourceIPs: []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")}}
	o.setDefaults()
	f := &fleet{o: o}
	ctx, cancel := context.WithCancel(context.Background())
	var started []*device
	defer func() {
		cancel()
		for _, d := range started {
			<-d.cm.Load().Done()
		}
	}()
	for i := range devices {
		d, err := newDevice(f, i, deviceID("sim", i+1), "", "secret", "mqtt://"+ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if err := d.start(ctx); err != nil {
			t.Fatal(err)
		}
		started = append(started, d)
	}
	select {
	case <-all:
	case <-time.After(20 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("connections seen from %v, want all %d devices", from, devices)
	}
	want := map[string]string{"sim-00001": "127.0.0.2", "sim-00002": "127.0.0.3", "sim-00003": "127.0.0.2"}
	mu.Lock()
	defer mu.Unlock()
	for id, ip := range want {
		if from[id] != ip {
			t.Errorf("%s connected from %s, want %s", id, from[id], ip)
		}
	}
}
