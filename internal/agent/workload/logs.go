package workload

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// maxLineBytes bounds one log line; longer output is split.
const maxLineBytes = 4096

// LogLine is one line of a workload's output as the ring keeps it.
type LogLine struct {
	// Seq numbers the workload's lines since the Supervisor was created,
	// from 1; it goes on across restarts, replacements and removals of the
	// workload.
	Seq  uint64
	Time time.Time
	Line string
}

// logSink keeps one workload's output: the last lines in a ring and all
// of it in a rotating file. Old and new processes of the same name share
// it. It is safe for concurrent use.
type logSink struct {
	now    func() time.Time
	logger *slog.Logger

	mu      sync.Mutex // guards everything below
	ring    []LogLine
	next    int    // index of the oldest line once the ring is full
	seq     uint64 // Seq of the newest line
	full    bool
	file    *rotatingFile
	fileErr bool // a file error was logged; the ring keeps working
}

// newLogSink returns a sink whose first line gets Seq seq+1.
func newLogSink(lines int, seq uint64, file *rotatingFile, now func() time.Time, logger *slog.Logger) *logSink {
	return &logSink{ring: make([]LogLine, 0, lines), seq: seq, file: file, now: now, logger: logger}
}

// add appends one line.
func (l *logSink) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	e := LogLine{Seq: l.seq, Time: l.now(), Line: line}
	if !l.full && len(l.ring) < cap(l.ring) {
		l.ring = append(l.ring, e)
		l.full = len(l.ring) == cap(l.ring)
	} else {
		l.ring[l.next] = e
		l.next = (l.next + 1) % len(l.ring)
	}
	if l.file == nil {
		return
	}
	if err := l.file.writeLine(e.Time, line); err != nil && !l.fileErr {
		l.fileErr = true
		l.logger.Error("writing workload log file; keeping logs in memory only", "err", err)
	}
}

// since returns the last n lines (all when n <= 0) with a Seq above
// after, oldest first, and the Seq of the newest line (0 when none).
// Called with l.mu held.
func (l *logSink) since(after uint64, n int) ([]LogLine, uint64) {
	all := make([]LogLine, 0, len(l.ring))
	for _, part := range [][]LogLine{l.ring[l.next:], l.ring[:l.next]} {
		for _, e := range part {
			if e.Seq > after {
				all = append(all, e)
			}
		}
	}
	if n > 0 && n < len(all) {
		all = all[len(all)-n:]
	}
	return all, l.seq
}

// tail returns the last n lines (all when n <= 0), oldest first.
func (l *logSink) tail(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines, _ := l.since(0, n)
	out := make([]string, len(lines))
	for i, e := range lines {
		out[i] = e.Line
	}
	return out
}

// linesSince is since with l.mu taken.
func (l *logSink) linesSince(after uint64, n int) ([]LogLine, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.since(after, n)
}

// lastSeq returns the Seq of the newest line.
func (l *logSink) lastSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq
}

func (l *logSink) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.file != nil {
		_ = l.file.close()
	}
}

// copyLines reads r until EOF and adds each line to l, splitting lines
// longer than maxLineBytes.
func (l *logSink) copyLines(r io.Reader) {
	br := bufio.NewReaderSize(r, maxLineBytes)
	for {
		b, err := br.ReadSlice('\n')
		if len(b) > 0 {
			if b[len(b)-1] == '\n' {
				b = b[:len(b)-1]
			}
			l.add(string(b))
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// rotatingFile appends lines to path and, before it would grow beyond
// maxBytes, renames it to path.1 (path.1 to path.2, …), keeping keep old
// files. It is not safe for concurrent use (logSink locks).
type rotatingFile struct {
	path     string
	maxBytes int64
	keep     int
	f        *os.File
	size     int64
}

func (r *rotatingFile) writeLine(t time.Time, line string) error {
	if r.f == nil {
		if err := os.MkdirAll(filepath.Dir(r.path), 0o750); err != nil {
			return fmt.Errorf("creating log directory: %w", err)
		}
		f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return fmt.Errorf("opening log file: %w", err)
		}
		fi, err := f.Stat()
		if err != nil {
			_ = f.Close()
			return fmt.Errorf("stat log file: %w", err)
		}
		r.f, r.size = f, fi.Size()
	}
	rec := t.UTC().Format(time.RFC3339Nano) + " " + line + "\n"
	if r.size > 0 && r.size+int64(len(rec)) > r.maxBytes {
		if err := r.rotate(); err != nil {
			return err
		}
	}
	n, err := r.f.WriteString(rec)
	r.size += int64(n)
	if err != nil {
		return fmt.Errorf("writing log file: %w", err)
	}
	return nil
}

func (r *rotatingFile) rotate() error {
	_ = r.f.Close()
	r.f = nil
	for i := r.keep - 1; i >= 1; i-- {
		// Missing older files are normal for the first rotations.
		_ = os.Rename(fmt.Sprintf("%s.%d", r.path, i), fmt.Sprintf("%s.%d", r.path, i+1))
	}
	if r.keep > 0 {
		if err := os.Rename(r.path, r.path+".1"); err != nil {
			return fmt.Errorf("rotating log file: %w", err)
		}
	} else if err := os.Remove(r.path); err != nil {
		return fmt.Errorf("rotating log file: %w", err)
	}
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("opening log file: %w", err)
	}
	r.f, r.size = f, 0
	return nil
}

func (r *rotatingFile) close() error {
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}
