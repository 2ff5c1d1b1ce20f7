package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
)

// runREST measures, in one run, the REST API of a real `outpost hub` on an
// authenticated device lookup (GET /api/v1/devices/{id} with a JWT bearer
// token) and, as a ceiling, a bare gin handler (GET /ping in ReleaseMode)
// served by a child process of this binary. Both servers are separate
// processes loaded one after the other by the same in-process load
// generator: concurrency keep-alive clients each sending one request after
// another. It prints requests/s, p50/p99 latency, errors and the server's
// CPU time for each, and the ratio of the two request rates; any answer
// other than 200 is an error and makes the run fail.
func runREST(ctx context.Context, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("rest", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: outpost-bench rest [flags]
Loads GET /api/v1/devices/{id} (JWT) on a real outpost hub, then GET /ping
on a bare gin server in a child process, with the same clients; prints
requests/s, p50/p99 latency, errors, server CPU and the ratio of the rates.
Flags:
`)
		fs.PrintDefaults()
	}
	concurrency := fs.Int("concurrency", 32, "concurrent keep-alive HTTP clients")
	warmup := fs.Duration("warmup", 2*time.Second, "load on each server before its measuring window")
	duration := fs.Duration("duration", 10*time.Second, "measuring window on each server")
	devices := fs.Int("devices", 20, "devices registered on the hub; the clients look them up in turn")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *concurrency < 1 || *devices < 1 || *duration <= 0 || *warmup < 0 {
		return errors.New("--concurrency and --devices must be at least 1, --duration positive and --warmup not negative")
	}
	fmt.Fprintf(w, "$ %s\n", commandLine(append([]string{"outpost-bench", "rest"}, args...)))

	e, err := newEnvWithHub(ctx)
	if err != nil {
		return err
	}
	defer e.close()
	token, err := e.loginHTTP(ctx)
	if err != nil {
		return err
	}
	ids := make([]string, *devices)
	for i := range ids {
		ids[i] = fmt.Sprintf("rest-%03d", i)
		if _, err := e.addDevice(ctx, ids[i]); err != nil {
			return err
		}
	}
	ping, pingURL, err := e.startGinPing(ctx)
	if err != nil {
		return err
	}

	lookup := restTarget{
		name: "device lookup", what: "GET /api/v1/devices/{id}, JWT bearer, real hub",
		pid: e.hub.cmd.Process.Pid,
		request: func(i int) (*http.Request, error) {
			req, err := http.NewRequest(http.MethodGet, e.hubURL+"/api/v1/devices/"+ids[i%len(ids)], nil)
			if err == nil {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			return req, err
		},
		// The hub must have found the device, not answered 200 for something else.
		check: func(i int, body []byte) error {
			var d struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(body, &d); err != nil || d.ID != ids[i%len(ids)] {
				return fmt.Errorf("device lookup of %s answered %q", ids[i%len(ids)], body)
			}
			return nil
		},
	}
	gping := restTarget{
		name: "gin ping", what: "GET /ping, bare gin.New() in ReleaseMode, child process",
		pid: ping.cmd.Process.Pid,
		request: func(int) (*http.Request, error) {
			return http.NewRequest(http.MethodGet, pingURL+"/ping", nil)
		},
		check: func(_ int, body []byte) error {
			if !bytes.Equal(bytes.TrimSpace(body), []byte(`{"message":"pong"}`)) {
				return fmt.Errorf("ping answered %q", body)
			}
			return nil
		},
	}

	fmt.Fprintf(w, "REST: %d keep-alive clients in this process, %s warm-up and %s window per server, one server after the other\n",
		*concurrency, *warmup, *duration)
	fmt.Fprintf(w, "  %-14s %10s %9s %9s %7s %13s %13s  %s\n", "server", "req/s", "p50 ms", "p99 ms", "errors", "server CPU s", "loadgen CPU s", "what")
	var results []restResult
	for _, t := range []restTarget{lookup, gping} {
		r, err := t.load(ctx, *concurrency, *warmup, *duration)
		if err != nil {
			return fmt.Errorf("loading %s: %w", t.name, err)
		}
		results = append(results, r)
		fmt.Fprintf(w, "  %-14s %10.0f %9.3f %9.3f %7d %13.2f %13.2f  %s\n", t.name, r.qps, ms(r.p50), ms(r.p99), r.errors, r.serverCPU, r.selfCPU, t.what)
	}
	fmt.Fprintf(w, "  device lookup / gin ping: %.3f of the requests/s\n", results[0].qps/results[1].qps)
	var errs []error
	for _, r := range results {
		if r.errors > 0 {
			errs = append(errs, fmt.Errorf("%s: %d errors, first: %v", r.name, r.errors, r.firstErr))
		}
	}
	return errors.Join(errs...)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// restTarget is one server under load.
type restTarget struct {
	name, what string
	// pid is the server's process, whose CPU time is measured.
	pid int
	// request returns the i-th request; check verifies the body of its 200 answer.
	request func(i int) (*http.Request, error)
	check   func(i int, body []byte) error
}

type restResult struct {
	name      string
	qps       float64
	p50, p99  time.Duration
	errors    int64
	firstErr  error
	serverCPU float64 // CPU seconds of the server over the window
	selfCPU   float64 // CPU seconds of this process over the window
}

// The phases of a load run, in order.
const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseStop
)

// load runs concurrency clients against t: warm-up, then the measuring
// window. A request counts in the window when it completes inside it;
// errors count in both phases. Requests in flight when the window ends are
// allowed to finish rather than cancelled, so that they are not errors.
func (t restTarget) load(ctx context.Context, concurrency int, warmup, duration time.Duration) (restResult, error) {
	// One request first: a server that answers wrongly fails fast.
	tr := &http.Transport{MaxIdleConns: concurrency, MaxIdleConnsPerHost: concurrency, DisableCompression: true, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	if _, err := t.do(ctx, client, 0); err != nil {
		return restResult{}, err
	}

	var (
		phase    atomic.Int32
		errCount atomic.Int64
		firstErr error
		errOnce  sync.Once
		wg       sync.WaitGroup
	)
	lats := make([][]time.Duration, concurrency)
	for c := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; ; i += concurrency {
				if phase.Load() == phaseStop || ctx.Err() != nil {
					return
				}
				start := time.Now()
				_, err := t.do(ctx, client, i)
				lat := time.Since(start)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					errCount.Add(1)
					errOnce.Do(func() { firstErr = err })
					continue
				}
				if phase.Load() == phaseMeasure {
					lats[c] = append(lats[c], lat)
				}
			}
		}()
	}
	stop := func() {
		phase.Store(phaseStop)
		wg.Wait()
	}
	if !sleepCtx(ctx, warmup) {
		stop()
		return restResult{}, ctx.Err()
	}
	// Completions are counted as the phase is read after each request, so
	// the window starts here and ends when the phase changes again.
	cpu0, self0 := mustCPU(t.pid), mustCPU(os.Getpid())
	t0 := time.Now()
	phase.Store(phaseMeasure)
	ok := sleepCtx(ctx, duration)
	phase.Store(phaseStop)
	t1 := time.Now()
	cpu1, self1 := mustCPU(t.pid), mustCPU(os.Getpid())
	wg.Wait()
	if !ok {
		return restResult{}, ctx.Err()
	}

	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	if len(all) == 0 {
		return restResult{}, fmt.Errorf("no request completed in the %s window; errors %d, first: %v", duration, errCount.Load(), firstErr)
	}
	slices.Sort(all)
	pct := func(p float64) time.Duration { return all[min(len(all)-1, int(p*float64(len(all))))] }
	return restResult{
		name: t.name, qps: float64(len(all)) / t1.Sub(t0).Seconds(), p50: pct(0.50), p99: pct(0.99),
		errors: errCount.Load(), firstErr: firstErr,
		serverCPU: cpu1 - cpu0, selfCPU: self1 - self0,
	}, nil
}

// do sends the i-th request and reads the whole answer, so the connection
// is reused; any status but 200, or a body that fails check, is an error.
func (t restTarget) do(ctx context.Context, client *http.Client, i int) ([]byte, error) {
	req, err := t.request(i)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("reading the answer to %s: %w", req.URL.Path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s: %.200s", req.URL.Path, resp.Status, body)
	}
	return body, t.check(i, body)
}

// sleepCtx waits for d and reports whether ctx was still live then.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}

// loginHTTP logs in as admin through the REST API and returns the JWT.
func (e *env) loginHTTP(ctx context.Context) (string, error) {
	pw, err := os.ReadFile(filepath.Join(e.hubData, "admin-password"))
	if err != nil {
		return "", err
	}
	body, _ := json.Marshal(map[string]string{"username": "admin", "password": strings.TrimSpace(string(pw))})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.hubURL+"/api/v1/auth/login", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("logging in: %w", err)
	}
	defer resp.Body.Close()
	var tok struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != http.StatusOK || tok.Token == "" {
		return "", fmt.Errorf("logging in: status %d, %v", resp.StatusCode, err)
	}
	return tok.Token, nil
}

var ginPingLine = regexp.MustCompile(`gin-ping: listening on (http://\S+)`)

// startGinPing starts this binary's hidden gin-ping command on a loopback
// port chosen by the kernel and returns it with its URL.
func (e *env) startGinPing(ctx context.Context) (*daemon, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", fmt.Errorf("finding this binary: %w", err)
	}
	d, err := e.spawn(self, "gin-ping.log", "gin-ping", "--listen", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	var url string
	err = poll(ctx, 30*time.Second, 10*time.Millisecond, func() error {
		if d.exited() {
			return fmt.Errorf("gin-ping exited: %v\n%s", d.err, d.output())
		}
		m := ginPingLine.FindStringSubmatch(d.output())
		if m == nil {
			return errors.New("gin-ping has not printed its address")
		}
		url = m[1]
		return nil
	})
	return d, url, err
}

// runGinPing is the hidden gin-ping command: a bare gin engine in
// ReleaseMode, without the default logger and recovery middleware, that
// answers GET /ping with {"message":"pong"} until SIGTERM or SIGINT.
func runGinPing(ctx context.Context, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("gin-ping", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to serve on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM)
	defer stop()
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.GET("/ping", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"message": "pong"}) })
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", *listen, err)
	}
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(w, "gin-ping: listening on http://%s\n", ln.Addr())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	<-served
	return nil
}

// commandLine quotes args for a POSIX shell where needed.
func commandLine(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
		}) < 0 {
			out[i] = a
			continue
		}
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(out, " ")
}
