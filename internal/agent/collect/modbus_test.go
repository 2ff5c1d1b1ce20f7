package collect

import (
	"fmt"
	"math"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/simonvetter/modbus"

	"github.com/outpost-edge/outpost/internal/agent/config"
	"github.com/outpost-edge/outpost/internal/testutil"
)

// modbusDevice is an in-process Modbus TCP device: a RequestHandler over
// two register tables that records the requests it serves.
type modbusDevice struct {
	mu       sync.Mutex
	holding  map[uint16]uint16
	input    map[uint16]uint16
	requests []string // "holding 0+6 unit 7"
	clients  map[string]bool
}

func (d *modbusDevice) HandleCoils(*modbus.CoilsRequest) ([]bool, error) {
	return nil, modbus.ErrIllegalFunction
}

func (d *modbusDevice) HandleDiscreteInputs(*modbus.DiscreteInputsRequest) ([]bool, error) {
	return nil, modbus.ErrIllegalFunction
}

func (d *modbusDevice) HandleHoldingRegisters(req *modbus.HoldingRegistersRequest) ([]uint16, error) {
	if req.IsWrite {
		return nil, modbus.ErrIllegalFunction
	}
	return d.read("holding", d.holding, req.ClientAddr, req.UnitId, req.Addr, req.Quantity)
}

func (d *modbusDevice) HandleInputRegisters(req *modbus.InputRegistersRequest) ([]uint16, error) {
	return d.read("input", d.input, req.ClientAddr, req.UnitId, req.Addr, req.Quantity)
}

func (d *modbusDevice) read(table string, regs map[uint16]uint16, client string, unit uint8, addr, n uint16) ([]uint16, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.requests = append(d.requests, fmt.Sprintf("%s %d+%d unit %d", table, addr, n, unit))
	d.clients[client] = true
	out := make([]uint16, n)
	for i := range n {
		v, ok := regs[addr+i]
		if !ok {
			return nil, modbus.ErrIllegalDataAddress
		}
		out[i] = v
	}
	return out, nil
}

func (d *modbusDevice) stats() (requests []string, clients int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.requests...), len(d.clients)
}

// startModbusServer serves d on addr, or on a free loopback port when addr
// is empty, and returns the address. The library cannot listen on port 0
// and report the port, so a free one is picked first.
func startModbusServer(t *testing.T, d *modbusDevice, addr string) (string, *modbus.ModbusServer) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		a := addr
		if a == "" {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			a = ln.Addr().String()
			ln.Close()
		}
		srv, err := modbus.NewServer(&modbus.ServerConfiguration{URL: "tcp://" + a, Timeout: 10 * time.Second, MaxClients: 4}, d)
		if err != nil {
			t.Fatal(err)
		}
		if err = srv.Start(); err == nil {
			t.Cleanup(func() { srv.Stop() })
			return a, srv
		}
		if attempt > 20 {
			t.Fatalf("starting modbus server: %v", err)
		}
	}
}

// words splits a 32-bit value into its high and low words.
func words(u uint32) (hi, lo uint16) { return uint16(u >> 16), uint16(u) }

func TestModbusSource(t *testing.T) {
	f32 := math.Float32bits(21.5)
	fhi, flo := words(f32)
	i32 := int32(-100000)
	ihi, ilo := words(uint32(i32))
	uhi, ulo := words(70000)
	d := &modbusDevice{
		clients: map[string]bool{},
		holding: map[uint16]uint16{
			0: 1234,           // uint16, scale 0.1
			1: uint16(0xFFFB), // int16 -5
			2: fhi, 3: flo,    // float32, big word order
			4: flo, 5: fhi, // float32, little word order
			10: ihi, 11: ilo, // int32, big
			20: 7, // separate request: 12..19 are not there
		},
		input: map[uint16]uint16{
			0: ilo, 1: ihi, // int32, little, scale 0.01, offset 1
			5: uhi, 6: ulo, // uint32, big
		},
	}
	addr, srv := startModbusServer(t, d, "")
	unit := 7
	cfg := config.ModbusSource{
		URL:    "tcp://" + addr,
		UnitID: &unit,
		Registers: []config.ModbusRegister{
			{Name: "flow", Address: 0, Scale: 0.1},
			{Name: "delta", Address: 1, Type: "int16"},
			{Name: "temp_big", Address: 2, Type: "float32", WordOrder: "big"},
			{Name: "temp_little", Address: 4, Type: "float32", WordOrder: "little"},
			{Name: "count", Address: 10, Type: "int32"},
			{Name: "far", Address: 20},
			{Name: "energy", Address: 0, Kind: "input", Type: "int32", WordOrder: "little", Scale: 0.01, Offset: 1},
			{Name: "hours", Address: 5, Kind: "input", Type: "uint32"},
		},
	}
	m, err := NewModbus("pump", cfg, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for range 2 {
		got, err := collectWithin(t, m, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		want := "[pump/flow=123.4 pump/delta=-5 pump/temp_big=21.5 pump/temp_little=21.5 pump/count=-100000 pump/far=7 pump/energy=-999 pump/hours=70000]"
		if fmt.Sprint(got) != want {
			t.Errorf("points = %v\nwant     %v", got, want)
		}
	}
	reqs, clients := d.stats()
	wantReqs := "[holding 0+6 unit 7 holding 10+2 unit 7 holding 20+1 unit 7 input 0+2 unit 7 input 5+2 unit 7]"
	if fmt.Sprint(reqs[:5]) != wantReqs {
		t.Errorf("requests = %v\nwant       %v", reqs[:5], wantReqs)
	}
	if clients != 1 {
		t.Errorf("%d connections for two reads, want 1", clients)
	}

	t.Run("exception fails its registers only", func(t *testing.T) {
		m, err := NewModbus("pump", config.ModbusSource{URL: "tcp://" + addr, Registers: []config.ModbusRegister{
			{Name: "flow", Address: 0}, {Name: "nothing", Address: 300, Kind: "input"},
		}}, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		got, err := collectWithin(t, m, 5*time.Second)
		if fmt.Sprint(got) != "[pump/flow=1234]" || err == nil || !strings.Contains(err.Error(), "illegal data address") {
			t.Errorf("Collect = %v, %v; want flow and an illegal address error", got, err)
		}
		if m.client == nil {
			t.Error("an exception dropped the connection")
		}
		if reqs, _ := d.stats(); !strings.Contains(fmt.Sprint(reqs), "unit 1") {
			t.Errorf("requests %v, want the default unit id 1", reqs)
		}
	})

	t.Run("reconnects after the device restarts", func(t *testing.T) {
		srv.Stop()
		_, err := collectWithin(t, m, 5*time.Second)
		if err == nil {
			t.Fatal("Collect from a stopped device = nil error")
		}
		startModbusServer(t, d, addr)
		testutil.Eventually(t, 5*time.Second, func() error {
			got, err := collectWithin(t, m, time.Second)
			if err != nil {
				return err
			}
			if len(got) != 8 {
				return fmt.Errorf("got %v", got)
			}
			return nil
		})
	})

	t.Run("nothing listening", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closed := ln.Addr().String()
		ln.Close()
		m, err := NewModbus("x", config.ModbusSource{URL: "tcp://" + closed, Registers: []config.ModbusRegister{{Name: "a"}}}, 200*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		if _, err := collectWithin(t, m, time.Second); err == nil || !strings.Contains(err.Error(), "connecting") {
			t.Errorf("err = %v, want a connection error", err)
		}
	})
}

func TestNewModbusRejectsBadConfig(t *testing.T) {
	good := config.ModbusRegister{Name: "a"}
	for _, tt := range []struct {
		name string
		cfg  config.ModbusSource
	}{
		{"scheme", config.ModbusSource{URL: "udp://h:502", Registers: []config.ModbusRegister{good}}},
		{"no port", config.ModbusSource{URL: "tcp://h", Registers: []config.ModbusRegister{good}}},
		{"no registers", config.ModbusSource{URL: "tcp://h:502"}},
		{"type", config.ModbusSource{URL: "tcp://h:502", Registers: []config.ModbusRegister{{Name: "a", Type: "float64"}}}},
		{"address", config.ModbusSource{URL: "tcp://h:502", Registers: []config.ModbusRegister{{Name: "a", Address: 65535, Type: "uint32"}}}},
		{"kind", config.ModbusSource{URL: "tcp://h:502", Registers: []config.ModbusRegister{{Name: "a", Kind: "coil"}}}},
	} {
		if _, err := NewModbus("m", tt.cfg, time.Second); err == nil {
			t.Errorf("%s: NewModbus = nil error", tt.name)
		}
	}
}
