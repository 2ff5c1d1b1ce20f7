package collect

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/simonvetter/modbus"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/internal/agent/config"
	"github.com/outpost-edge/outpost/protocol"
)

// maxRegistersPerRequest is the most registers one Modbus read request
// may ask for (the protocol's limit for function codes 03 and 04).
const maxRegistersPerRequest = 125

// Modbus is a source that reads holding and input registers of a Modbus
// TCP device; each configured register becomes the point
// "<source name>/<name>" with the value raw*scale+offset. Registers that
// are adjacent in the same table are read with one request.
//
// The connection is opened at the first read and kept; after a transport
// error (timeout, reset, garbled frame) it is closed and opened again at
// the next read. A Modbus exception (illegal address, device busy…) fails
// the registers of that request only and keeps the connection.
type Modbus struct {
	name    string
	url     string
	unitID  uint8
	timeout time.Duration
	reads   []modbusRead

	// client is the open connection, nil when there is none. dialing
	// delivers the result of a connection attempt still running: the
	// library dials with a fixed 5s timeout and no context, so the attempt
	// runs in a goroutine that a read's shorter deadline can leave behind.
	client  *modbus.ModbusClient
	dialing chan modbusDial
	// wg tracks the dialing goroutine, for Close.
	wg sync.WaitGroup
}

// modbusDial is the outcome of one connection attempt.
type modbusDial struct {
	client *modbus.ModbusClient
	err    error
}

// modbusRead is one read request: count registers of a table from start,
// and the values decoded from them.
type modbusRead struct {
	table modbus.RegType
	start uint16
	count uint16
	regs  []modbusRegister
}

// modbusRegister is one configured value.
type modbusRegister struct {
	sensor        string
	address       uint16
	typ           string
	littleWords   bool
	scale, offset float64
}

func (r modbusRegister) words() uint16 {
	if r.typ == config.ModbusUint16 || r.typ == config.ModbusInt16 {
		return 1
	}
	return 2
}

var _ Source = (*Modbus)(nil)

// NewModbus returns a Modbus source named name for the device cfg
// describes; timeout bounds each request and a connection attempt's wait.
// Absent register kinds, types, word orders and scales take their
// defaults (holding, uint16, big, 1) and an absent unit id is 1.
func NewModbus(name string, cfg config.ModbusSource, timeout time.Duration) (*Modbus, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme != "tcp" || u.Hostname() == "" || u.Port() == "" {
		return nil, fmt.Errorf("modbus: %q is not tcp://host:port", cfg.URL)
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("modbus: timeout must be positive, got %s", timeout)
	}
	unit := config.DefaultModbusUnitID
	if cfg.UnitID != nil {
		unit = *cfg.UnitID
	}
	if unit < 0 || unit > 255 {
		return nil, fmt.Errorf("modbus: unit id must be 0 to 255, got %d", unit)
	}
	if len(cfg.Registers) == 0 {
		return nil, errors.New("modbus: no registers")
	}
	type tabled struct {
		table modbus.RegType
		reg   modbusRegister
	}
	var regs []tabled
	for _, r := range cfg.Registers {
		reg := modbusRegister{sensor: name + "/" + r.Name, typ: cmp.Or(r.Type, config.ModbusUint16), scale: cmp.Or(r.Scale, 1), offset: r.Offset}
		if err := protocol.ValidSensorName(reg.sensor); err != nil {
			return nil, fmt.Errorf("modbus: register %q: %w", r.Name, err)
		}
		switch reg.typ {
		case config.ModbusUint16, config.ModbusInt16, config.ModbusUint32, config.ModbusInt32, config.ModbusFloat32:
		default:
			return nil, fmt.Errorf("modbus: register %q: unknown type %q", r.Name, r.Type)
		}
		switch r.WordOrder {
		case "", config.WordOrderBig:
		case config.WordOrderLittle:
			reg.littleWords = true
		default:
			return nil, fmt.Errorf("modbus: register %q: unknown word order %q", r.Name, r.WordOrder)
		}
		if r.Address < 0 || r.Address+int(reg.words())-1 > math.MaxUint16 {
			return nil, fmt.Errorf("modbus: register %q: address %d out of range", r.Name, r.Address)
		}
		reg.address = uint16(r.Address)
		var table modbus.RegType
		switch r.Kind {
		case "", config.ModbusHolding:
			table = modbus.HOLDING_REGISTER
		case config.ModbusInput:
			table = modbus.INPUT_REGISTER
		default:
			return nil, fmt.Errorf("modbus: register %q: unknown kind %q", r.Name, r.Kind)
		}
		regs = append(regs, tabled{table, reg})
	}
	// Group registers that are adjacent or overlapping in one table into
	// one request; gaps are never read, since a device may refuse them.
	slices.SortStableFunc(regs, func(a, b tabled) int {
		return cmp.Or(cmp.Compare(a.table, b.table), cmp.Compare(a.reg.address, b.reg.address))
	})
	var reads []modbusRead
	for _, t := range regs {
		end := int(t.reg.address) + int(t.reg.words())
		if n := len(reads); n > 0 {
			last := &reads[n-1]
			lastEnd := int(last.start) + int(last.count)
			if last.table == t.table && int(t.reg.address) <= lastEnd && max(end, lastEnd)-int(last.start) <= maxRegistersPerRequest {
				last.count = uint16(max(end, lastEnd) - int(last.start))
				last.regs = append(last.regs, t.reg)
				continue
			}
		}
		reads = append(reads, modbusRead{table: t.table, start: t.reg.address, count: t.reg.words(), regs: []modbusRegister{t.reg}})
	}
	return &Modbus{name: name, url: cfg.URL, unitID: uint8(unit), timeout: timeout, reads: reads}, nil
}

// Collect reads every register.
func (m *Modbus) Collect(ctx context.Context, _ time.Time) ([]*outpostv1.Point, error) {
	client, err := m.connect(ctx)
	if err != nil {
		return nil, err
	}
	var points []*outpostv1.Point
	var errs []error
	for _, rd := range m.reads {
		if err := ctx.Err(); err != nil {
			errs = append(errs, fmt.Errorf("reading %s: %w", m.url, err))
			break
		}
		words, err := client.ReadRegisters(rd.start, rd.count, rd.table)
		if err == nil && len(words) != int(rd.count) {
			err = fmt.Errorf("got %d registers, want %d", len(words), rd.count)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("reading %d %s registers at %d from %s: %w", rd.count, tableName(rd.table), rd.start, m.url, err))
			if !isModbusException(err) {
				m.disconnect()
				break
			}
			continue
		}
		for _, r := range rd.regs {
			off := r.address - rd.start
			v, err := r.decode(words[off : off+r.words()])
			if err != nil {
				errs = append(errs, fmt.Errorf("register %s at %d: %w", r.sensor, r.address, err))
				continue
			}
			points = append(points, numPoint(r.sensor, v*r.scale+r.offset))
		}
	}
	return points, errors.Join(errs...)
}

// decode turns the register words (one or two) into a number.
func (r modbusRegister) decode(w []uint16) (float64, error) {
	switch r.typ {
	case config.ModbusUint16:
		return float64(w[0]), nil
	case config.ModbusInt16:
		return float64(int16(w[0])), nil
	}
	hi, lo := w[0], w[1]
	if r.littleWords {
		hi, lo = lo, hi
	}
	u := uint32(hi)<<16 | uint32(lo)
	switch r.typ {
	case config.ModbusUint32:
		return float64(u), nil
	case config.ModbusInt32:
		return float64(int32(u)), nil
	default: // float32
		f := float64(math.Float32frombits(u))
		if !finite(f) {
			return 0, fmt.Errorf("float32 is %v", f)
		}
		return f, nil
	}
}

// connect returns the open connection, opening one if need be. A
// connection attempt that outlasts ctx keeps running and is picked up by
// the next read.
func (m *Modbus) connect(ctx context.Context) (*modbus.ModbusClient, error) {
	if m.client != nil {
		return m.client, nil
	}
	if m.dialing == nil {
		ch := make(chan modbusDial, 1)
		m.dialing = ch
		m.wg.Go(func() { ch <- m.dial() })
	}
	select {
	case d := <-m.dialing:
		m.dialing = nil
		if d.err != nil {
			return nil, d.err
		}
		m.client = d.client
		return m.client, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("connecting to %s: %w", m.url, ctx.Err())
	}
}

// dial opens a connection.
func (m *Modbus) dial() modbusDial {
	c, err := modbus.NewClient(&modbus.ClientConfiguration{
		URL:     m.url,
		Timeout: m.timeout,
		// The library logs every failure; the collector already logs
		// the errors Collect returns.
		Logger: log.New(io.Discard, "", 0),
	})
	if err == nil {
		err = c.Open()
	}
	if err == nil {
		err = c.SetUnitId(m.unitID)
	}
	if err != nil {
		if c != nil {
			c.Close()
		}
		return modbusDial{err: fmt.Errorf("connecting to %s: %w", m.url, err)}
	}
	return modbusDial{client: c}
}

// disconnect closes the connection after a transport error.
func (m *Modbus) disconnect() {
	if m.client != nil {
		m.client.Close()
		m.client = nil
	}
}

// Close closes the connection, first waiting for a connection attempt
// still running (at most the library's 5s dial timeout).
func (m *Modbus) Close() error {
	if m.dialing != nil {
		if d := <-m.dialing; d.client != nil {
			d.client.Close()
		}
		m.dialing = nil
	}
	m.wg.Wait()
	m.disconnect()
	return nil
}

// isModbusException reports whether err is an exception the device
// answered with, after which the connection is still good.
func isModbusException(err error) bool {
	for _, e := range []error{
		modbus.ErrIllegalFunction, modbus.ErrIllegalDataAddress, modbus.ErrIllegalDataValue,
		modbus.ErrServerDeviceFailure, modbus.ErrAcknowledge, modbus.ErrServerDeviceBusy,
		modbus.ErrMemoryParityError, modbus.ErrGWPathUnavailable, modbus.ErrGWTargetFailedToRespond,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func tableName(t modbus.RegType) string {
	if t == modbus.INPUT_REGISTER {
		return "input"
	}
	return "holding"
}
