package collect

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/protocol"
)

// Limits of an Exec source.
const (
	// MaxExecOutputBytes is the most standard output a command may print
	// in one read; a command printing more is killed and the read fails.
	MaxExecOutputBytes = 64 << 10
	// maxExecStderrBytes is how much standard error is kept for the error
	// message of a failed read.
	maxExecStderrBytes = 512
	// execWaitDelay is how long a command's output pipes may stay open
	// after it exited or was killed (a background child holding them)
	// before they are closed anyway.
	execWaitDelay = 500 * time.Millisecond
	// maxLineErrors is how many bad json_lines lines one error names.
	maxLineErrors = 3
)

// The output formats of an Exec source.
const (
	// ExecNumber is one number on standard output, the reading of the source.
	ExecNumber = "number"
	// ExecJSONLines is one JSON object per line:
	// {"sensor": "x", "value": 1.5} with an optional "ts_unix_ms", each the
	// point "<source name>/x". A value is a number, a string or a boolean.
	ExecJSONLines = "json_lines"
)

// Exec is a source that runs a command on every read and parses its
// standard output. The command runs without a shell, with standard input
// from /dev/null, with the agent's environment minus the OUTPOST_AGENT_*
// variables (they may hold the MQTT password), in a process group of its own: when the read's context
// ends (its timeout, or shutdown) the whole group is killed, and so is
// anything the command left running in its group when it exits.
type Exec struct {
	name   string
	argv   []string
	format string
}

var _ Source = (*Exec)(nil)

// NewExec returns an Exec source named name (the prefix of json_lines
// points) that runs argv and parses its output as format, ExecNumber or
// ExecJSONLines.
func NewExec(name string, argv []string, format string) (*Exec, error) {
	if len(argv) == 0 || argv[0] == "" {
		return nil, errors.New("exec: no command")
	}
	if format != ExecNumber && format != ExecJSONLines {
		return nil, fmt.Errorf("exec: unknown format %q; want %s or %s", format, ExecNumber, ExecJSONLines)
	}
	return &Exec{name: name, argv: append([]string(nil), argv...), format: format}, nil
}

// Collect runs the command once.
func (e *Exec) Collect(ctx context.Context, _ time.Time) ([]*outpostv1.Point, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stdout := &cappedBuffer{max: MaxExecOutputBytes, overflow: cancel}
	stderr := &cappedBuffer{max: maxExecStderrBytes}
	cmd := exec.CommandContext(ctx, e.argv[0], e.argv[1:]...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Env = commandEnv()
	cmd.WaitDelay = execWaitDelay
	ownProcessGroup(cmd)
	err := cmd.Run()
	if cmd.Process != nil {
		killProcessGroup(cmd.Process.Pid)
	}
	switch {
	case stdout.overflowed:
		return nil, fmt.Errorf("running %s: printed more than %d bytes; killed", e.argv[0], MaxExecOutputBytes)
	case ctx.Err() != nil && (err != nil || cmd.ProcessState == nil || !cmd.ProcessState.Success()):
		return nil, fmt.Errorf("running %s: killed: %w", e.argv[0], context.Cause(ctx))
	case errors.Is(err, exec.ErrWaitDelay):
		// The command succeeded but left a child holding its output
		// open; that child is killed above and the output is complete.
	case err != nil:
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return nil, fmt.Errorf("running %s: %w: %s", e.argv[0], err, msg)
		}
		return nil, fmt.Errorf("running %s: %w", e.argv[0], err)
	}
	if e.format == ExecNumber {
		v, err := parseNumber(stdout.String())
		if err != nil {
			return nil, fmt.Errorf("parsing the output of %s: %w", e.argv[0], err)
		}
		return []*outpostv1.Point{numPoint("", v)}, nil
	}
	return parseJSONLines(e.name, stdout.Bytes())
}

// commandEnv is the agent's environment without the OUTPOST_AGENT_*
// variables, which may carry the MQTT password.
func commandEnv() []string {
	env := os.Environ()
	return slices.DeleteFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "OUTPOST_AGENT_") })
}

// jsonLine is one line of json_lines output.
type jsonLine struct {
	Sensor   string          `json:"sensor"`
	Value    json.RawMessage `json:"value"`
	TsUnixMs int64           `json:"ts_unix_ms"`
}

// parseJSONLines parses out, one JSON object per line, into points named
// "<name>/<sensor>". Empty lines are skipped. It returns the points of the
// good lines together with an error naming the bad ones.
func parseJSONLines(name string, out []byte) ([]*outpostv1.Point, error) {
	var points []*outpostv1.Point
	var errs []error
	bad := 0
	for i, line := range bytes.Split(out, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		p, err := parseJSONLine(name, line)
		if err != nil {
			if bad++; bad <= maxLineErrors {
				errs = append(errs, fmt.Errorf("line %d: %w", i+1, err))
			}
			continue
		}
		points = append(points, p)
	}
	if bad > maxLineErrors {
		errs = append(errs, fmt.Errorf("and %d more bad lines", bad-maxLineErrors))
	}
	if len(errs) > 0 {
		return points, fmt.Errorf(`parsing json_lines output (want {"sensor": "x", "value": 1.5} per line): %w`, errors.Join(errs...))
	}
	return points, nil
}

func parseJSONLine(name string, line []byte) (*outpostv1.Point, error) {
	var l jsonLine
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return nil, fmt.Errorf("not a JSON object of sensor, value and ts_unix_ms: %w", err)
	}
	if dec.More() {
		return nil, errors.New("more than one JSON value on the line")
	}
	if l.Sensor == "" {
		return nil, errors.New(`no "sensor"`)
	}
	full := name + "/" + l.Sensor
	if err := protocol.ValidSensorName(full); err != nil {
		return nil, err
	}
	if len(l.Value) == 0 {
		return nil, fmt.Errorf(`sensor %q: no "value"`, l.Sensor)
	}
	var v any
	if err := json.Unmarshal(l.Value, &v); err != nil {
		return nil, fmt.Errorf("sensor %q: %w", l.Sensor, err)
	}
	p, err := jsonPoint(full, v)
	if err != nil {
		return nil, fmt.Errorf("sensor %q: %w", l.Sensor, err)
	}
	p.TsUnixMs = l.TsUnixMs
	return p, nil
}

// jsonPoint turns a decoded JSON number, string or boolean into a point.
func jsonPoint(sensor string, v any) (*outpostv1.Point, error) {
	switch v := v.(type) {
	case float64:
		return numPoint(sensor, v), nil
	case json.Number:
		f, err := v.Float64()
		if err != nil || !finite(f) {
			return nil, fmt.Errorf("number %s is out of range", v)
		}
		return numPoint(sensor, f), nil
	case string:
		return &outpostv1.Point{Sensor: sensor, Value: &outpostv1.Point_Str{Str: v}}, nil
	case bool:
		return &outpostv1.Point{Sensor: sensor, Value: &outpostv1.Point_Flag{Flag: v}}, nil
	case nil:
		return nil, errors.New("value is null; want a number, a string or a boolean")
	default:
		return nil, fmt.Errorf("value is a JSON %s; want a number, a string or a boolean", jsonKind(v))
	}
}

// cappedBuffer keeps the first max bytes written to it and discards the
// rest; on the first byte too many it calls overflow, if set. It does not
// embed bytes.Buffer, whose ReadFrom io.Copy would use instead of Write.
type cappedBuffer struct {
	buf        bytes.Buffer
	max        int
	overflow   func()
	overflowed bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); len(p) > room {
		b.buf.Write(p[:max(room, 0)])
		if !b.overflowed && b.overflow != nil {
			b.overflow()
		}
		b.overflowed = true
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *cappedBuffer) Bytes() []byte  { return b.buf.Bytes() }
func (b *cappedBuffer) String() string { return b.buf.String() }
