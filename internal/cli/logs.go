package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/outpost-edge/outpost/protocol"
	"github.com/spf13/cobra"
)

// logTimeFormat is the --timestamps prefix: UTC with milliseconds.
const logTimeFormat = "2006-01-02T15:04:05.000Z07:00"

func servicePath(device, service, suffix string) string {
	return devicePath(device, "/services/"+url.PathEscape(service)+suffix)
}

func newLogsCmd(g *globals) *cobra.Command {
	var (
		tail       int
		follow     bool
		timestamps bool
		interval   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "logs DEVICE SERVICE",
		Short: "Print a deployed service's output on one device",
		Long: `logs asks a device, through the hub, for the newest --tail lines a deployed service
wrote (stdout and stderr; the agent keeps the most recent ones in memory). The
device must be online. --follow then asks every --interval for lines after the last
one printed and prints them until interrupted (Ctrl-C); while the device is offline
or slow to answer it says so on stderr and keeps trying. Lines a device dropped
between two polls, and an agent restart, are noted on stderr.

-o json prints the hub's answer; with --follow, one JSON object per log line.`,
		Example: `  outpost logs web-1 web
  outpost logs web-1 web --tail 20 --timestamps
  outpost logs web-1 web --follow
  outpost logs web-1 web -o json | jq -r '.lines[].line'`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if tail < 0 || tail > protocol.MaxLogLines {
				return fmt.Errorf("--tail %d: must be from 0 to %d (0: as many as the device returns)", tail, protocol.MaxLogLines)
			}
			if interval < 100*time.Millisecond {
				return fmt.Errorf("--interval %s: at least 100ms", interval)
			}
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			l := &logPrinter{g: g, device: args[0], service: args[1], timestamps: timestamps}
			if !follow {
				return l.once(cmd.Context(), c, tail)
			}
			return l.follow(cmd.Context(), c, tail, interval)
		},
	}
	f := cmd.Flags()
	f.IntVarP(&tail, "tail", "n", 100, fmt.Sprintf("how many of the newest lines to print first (0 to %d; 0: all the device returns)", protocol.MaxLogLines))
	f.BoolVarP(&follow, "follow", "f", false, "keep printing new lines until interrupted")
	f.BoolVarP(&timestamps, "timestamps", "t", false, "start each line with the time the device read it (UTC)")
	f.DurationVar(&interval, "interval", time.Second, "with --follow: how often to ask for new lines")
	return cmd
}

// deviceLogsError is a device's answer that it cannot give the logs, e.g.
// because it has no such service.
type deviceLogsError struct{ what, msg string }

func (e *deviceLogsError) Error() string {
	return fmt.Sprintf("reading logs of %s: the device says: %s", e.what, e.msg)
}

// logPrinter fetches and prints one service's log lines.
type logPrinter struct {
	g               *globals
	device, service string
	timestamps      bool
}

func (l *logPrinter) label() string { return fmt.Sprintf("service %s on %s", l.service, l.device) }

// fetch asks the hub for lines: the newest tail (0: the device's default)
// after seq after (0: from the start).
func (l *logPrinter) fetch(ctx context.Context, c *client, tail int, after uint64) (*protocol.LogsResponse, []byte, error) {
	q := url.Values{}
	if tail > 0 {
		q.Set("tail", strconv.Itoa(tail))
	}
	if after > 0 {
		q.Set("after", strconv.FormatUint(after, 10))
	}
	var r protocol.LogsResponse
	raw, err := c.doJSON(ctx, http.MethodGet, servicePath(l.device, l.service, "/logs"), q, nil, &r)
	if err != nil {
		return nil, nil, err
	}
	if r.Error != "" {
		return nil, nil, &deviceLogsError{what: l.label(), msg: oneLine(r.Error, 500)}
	}
	return &r, raw, nil
}

// once prints the newest tail lines.
func (l *logPrinter) once(ctx context.Context, c *client, tail int) error {
	r, raw, err := l.fetch(ctx, c, tail, 0)
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) {
			return fmt.Errorf("reading logs of %s: %w%s", l.label(), err, logsHint(ae))
		}
		return err
	}
	if l.g.jsonOutput() {
		return writeJSON(l.g.stdout, raw)
	}
	return l.print(r.Lines)
}

// follow prints the newest tail lines, then every interval the lines after
// the last one it was told about, until ctx ends. Device offline (409), no
// answer (504), other 5xx and an unreachable hub are said once on stderr
// and polling goes on; other refusals end it.
func (l *logPrinter) follow(ctx context.Context, c *client, tail int, interval time.Duration) error {
	var (
		after     uint64 // Last of the previous answer; 0 before the first
		started   bool   // an answer was printed
		lastError string
	)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		n := tail
		if started {
			n = protocol.MaxLogLines
		}
		r, _, err := l.fetch(ctx, c, n, after)
		var ae *apiError
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.As(err, &ae) && ae.Status < 500 && ae.Status != http.StatusConflict:
			return fmt.Errorf("following logs of %s: %w%s", l.label(), err, logsHint(ae))
		case errors.As(err, new(*deviceLogsError)):
			return err
		case err != nil:
			if msg := err.Error(); msg != lastError {
				hint := ""
				if ae != nil {
					hint = logsHint(ae)
				}
				fmt.Fprintf(l.g.stderr, "outpost: following logs of %s: %v%s (retrying every %s)\n", l.label(), err, hint, interval)
				lastError = msg
			}
		default:
			if lastError != "" {
				fmt.Fprintf(l.g.stderr, "outpost: following logs of %s: the device answers again\n", l.label())
				lastError = ""
			}
			if started && r.Last < after {
				// Sequence numbers start again at 1 when the agent restarts:
				// every line it has now is new; the next poll asks for them
				// from the start.
				fmt.Fprintf(l.g.stderr, "outpost: %s: the agent restarted; its lines start again from 1\n", l.label())
				after = 0
				break
			}
			lines := r.Lines
			if started {
				if len(lines) > 0 && lines[0].Seq > after+1 {
					fmt.Fprintf(l.g.stderr, "outpost: %s: %d lines not shown (the device no longer has them)\n", l.label(), lines[0].Seq-after-1)
				}
				lines = linesAfter(lines, after)
			}
			if err := l.printFollowed(lines); err != nil {
				return err
			}
			after, started = r.Last, true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// linesAfter drops lines with Seq <= after, which a device should not send.
func linesAfter(lines []protocol.LogLine, after uint64) []protocol.LogLine {
	out := lines[:0:0]
	for _, ln := range lines {
		if ln.Seq > after {
			out = append(out, ln)
		}
	}
	return out
}

// logsHint explains the statuses particular to the logs endpoint, unless
// the hub's stable error code already does.
func logsHint(ae *apiError) string {
	switch {
	case ae.Code == "device_offline" || ae.Code == "device_timeout":
		return ""
	case ae.Status == http.StatusConflict:
		return " (the device is offline)"
	case ae.Status == http.StatusGatewayTimeout:
		return " (the device did not answer in time)"
	}
	return ""
}

func (l *logPrinter) printFollowed(lines []protocol.LogLine) error {
	if !l.g.jsonOutput() {
		return l.print(lines)
	}
	enc := json.NewEncoder(l.g.stdout)
	for _, ln := range lines {
		if err := enc.Encode(ln); err != nil {
			return err
		}
	}
	return nil
}

// print writes lines for people, each on one line of the terminal.
func (l *logPrinter) print(lines []protocol.LogLine) error {
	var b strings.Builder
	for _, ln := range lines {
		if l.timestamps {
			b.WriteString(time.UnixMilli(ln.Time).UTC().Format(logTimeFormat))
			b.WriteByte(' ')
		}
		b.WriteString(sanitizeLogLine(ln.Line))
		b.WriteByte('\n')
	}
	_, err := io.WriteString(l.g.stdout, b.String())
	return err
}

// sanitizeLogLine replaces control characters other than tab, so that a
// service cannot move the cursor or recolour the terminal of whoever reads
// its logs, and a line stays one line.
func sanitizeLogLine(s string) string {
	s = strings.TrimRight(s, "\r\n")
	if strings.IndexFunc(s, func(r rune) bool { return r != '\t' && unicode.IsControl(r) }) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r != '\t' && unicode.IsControl(r) {
			return '\uFFFD'
		}
		return r
	}, s)
}
