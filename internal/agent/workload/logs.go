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

// logSink keeps one workload's output: the last lines in a ring and all
// of it in a rotating file. Old and new processes of the same name share
// it. It is safe for concurrent use.
type logSink struct {
	now    func() time.Time
	logger *slog.Logger

	mu      sync.Mutex // guards everything below
	ring    []string
	next    int // index of the oldest line once the ring is full
	full    bool
	file    *rotatingFile
	fileErr bool // a file error was logged; the ring keeps working
}

func newLogSink(lines int, file *rotatingFile, now func() time.Time, logger *slog.Logger) *logSink {
	return &logSink{ring: make([]string, 0, lines), file: file, now: now, logger: logger}
}

// add appends one line.
func (l *logSink) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.full && len(l.ring) < cap(l.ring) {
		l.ring = append(l.ring, line)
		l.full = len(l.ring) == cap(l.ring)
	} else {
		l.ring[l.next] = line
		l.next = (l.next + 1) % len(l.ring)
	}
	if l.file == nil {
		return
	}
	if err := l.file.writeLine(l.now(), line); err != nil && !l.fileErr {
		l.fileErr = true
		l.logger.Error("writing workload log file; keeping logs in memory only", "err", err)
	}
}

// tail returns the last n lines (all when n <= 0), oldest first.
func (l *logSink) tail(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	all := make([]string, 0, len(l.ring))
	all = append(all, l.ring[l.next:]...)
	all = append(all, l.ring[:l.next]...)
	if n > 0 && n < len(all) {
		all = all[len(all)-n:]
	}
	return all
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
