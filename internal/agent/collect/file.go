package collect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
)

// MaxFileBytes is the most a File source reads of its file.
const MaxFileBytes = 4 << 10

// File is a source that reads one number from a file on every read, such
// as /sys/class/thermal/thermal_zone0/temp, and reports raw*scale+offset
// under the name of its Input.
type File struct {
	path          string
	scale, offset float64
}

var _ Source = (*File)(nil)

// NewFile returns a File source reading path; scale 0 means 1.
func NewFile(path string, scale, offset float64) (*File, error) {
	if path == "" {
		return nil, errors.New("file: no path")
	}
	if scale == 0 {
		scale = 1
	}
	if !finite(scale) || !finite(offset) {
		return nil, fmt.Errorf("file: scale and offset must be finite, got %v and %v", scale, offset)
	}
	return &File{path: path, scale: scale, offset: offset}, nil
}

// Collect reads the file.
func (f *File) Collect(_ context.Context, _ time.Time) ([]*outpostv1.Point, error) {
	fh, err := os.Open(f.path)
	if err != nil {
		return nil, fmt.Errorf("reading number: %w", err)
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading number from %s: %w", f.path, err)
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("reading number from %s: file larger than %d bytes", f.path, MaxFileBytes)
	}
	v, err := parseNumber(string(data))
	if err != nil {
		return nil, fmt.Errorf("reading number from %s: %w", f.path, err)
	}
	return []*outpostv1.Point{numPoint("", v*f.scale+f.offset)}, nil
}

// parseNumber parses s, one finite number surrounded by optional white space.
func parseNumber(s string) (float64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty, want one number")
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || !finite(v) {
		if len(s) > 40 {
			s = s[:40] + "…"
		}
		return 0, fmt.Errorf("%q is not a finite number", s)
	}
	return v, nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// numPoint returns a point with the number v, named sensor, not yet timestamped.
func numPoint(sensor string, v float64) *outpostv1.Point {
	return &outpostv1.Point{Sensor: sensor, Value: &outpostv1.Point_Num{Num: v}}
}
