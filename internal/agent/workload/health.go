package workload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// checker runs health checks. One is shared by all workloads of a
// Supervisor; it is safe for concurrent use.
type checker struct {
	// client has keep-alives off: a probe every few seconds gains nothing
	// from an idle connection, and none is left behind at shutdown.
	client *http.Client
	// addr is the IP address http and tcp checks connect to.
	addr string
}

func newChecker(addr string) *checker {
	return &checker{addr: addr, client: &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
		// A health endpoint that redirects elsewhere is followed no further.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// check runs hc once; hc has its defaults applied. env and cred are the
// workload's, for exec checks.
func (c *checker) check(ctx context.Context, hc HealthCheck, env []string, cred *procCred) error {
	ctx, cancel := context.WithTimeout(ctx, hc.Timeout)
	defer cancel()
	addr := net.JoinHostPort(c.addr, strconv.Itoa(hc.Port))
	switch hc.Type {
	case HealthHTTP:
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+hc.Path, nil)
		if err != nil {
			return fmt.Errorf("building request: %w", err)
		}
		req.Header.Set("User-Agent", "outpost-agent-healthcheck")
		resp, err := c.client.Do(req)
		if err != nil {
			return fmt.Errorf("http check: %w", err)
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 399 {
			return fmt.Errorf("http check: status %d", resp.StatusCode)
		}
		return nil
	case HealthTCP:
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("tcp check: %w", err)
		}
		return conn.Close()
	case HealthExec:
		cmd := exec.CommandContext(ctx, hc.Command[0], hc.Command[1:]...)
		cmd.Env, cmd.Dir = env, "/"
		cmd.SysProcAttr = newSysProcAttr()
		setCredential(cmd, cred)
		cmd.Cancel = func() error { return signalGroup(cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = time.Second
		out := &tailBuffer{max: 512}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Run(); err != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("exec check timed out after %s", hc.Timeout)
			}
			return fmt.Errorf("exec check: %w: %s", err, out.buf)
		}
		return nil
	}
	return fmt.Errorf("unknown health check type %q", hc.Type)
}

func (c *checker) close() { c.client.CloseIdleConnections() }

// tailBuffer keeps the last max bytes written. Used by one command's
// stdout and stderr, which os/exec copies from a single goroutine when
// both are the same writer.
type tailBuffer struct {
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}
