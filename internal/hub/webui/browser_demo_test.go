package webui_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/outpost-edge/outpost/internal/demo"
	"github.com/outpost-edge/outpost/internal/hub"
)

// syncBuffer is a bytes.Buffer safe for the demo's writer and the test's
// reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer // guarded by mu
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startDemo runs `outpost demo` in-process with n devices on free ports
// until the test ends, and returns the dashboard's URL and the generated
// admin password.
func startDemo(t *testing.T, n int) (url, password string) {
	t.Helper()
	dir := t.TempDir()
	logger := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	out := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- demo.Run(ctx, demo.Options{Devices: n, DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0"}, out, logger)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("demo stopped with error: %v", err)
		}
	})
	re := regexp.MustCompile(`Dashboard: open (\S+)/ in a browser`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			url = m[1]
			break
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("demo ended before printing its banner: %v\n%s", err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dashboard URL in the demo's banner after 30s:\n%s", out.String())
		}
	}
	pw, err := os.ReadFile(filepath.Join(dir, "hub", hub.AdminPasswordFileName))
	if err != nil {
		t.Fatalf("reading the demo's admin password: %v", err)
	}
	return url, strings.TrimSpace(string(pw))
}

// TestBrowserDemo drives the dashboard against `outpost demo`: the demo
// devices arrive in the fleet table over the event stream, demo-01's chart
// fills with the simulated agent's points, and a desired log_level set in
// the shadow editor comes back in the reported state, applied by the real
// agent. Both pages must fit a 375 px wide phone screen.
func TestBrowserDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo hub and agents; skipped under -short")
	}
	url, password := startDemo(t, 3)
	// Started after the demo, the browser closes before the demo stops.
	b := startBrowser(t)
	step, poll := b.step, b.poll
	step("sign in",
		chromedp.Navigate(url+"/"),
		chromedp.WaitVisible(chromedp.ID("password")),
		chromedp.SendKeys(chromedp.ID("password"), password+"\r"),
	)
	step("demo devices online, live",
		poll(`document.getElementById('fleet-updates') && document.getElementById('fleet-updates').textContent.startsWith('Live')`),
		poll(`['demo-01', 'demo-02', 'demo-03'].every((id) => { const r = document.querySelector('#fleet tr[data-device="' + id + '"]'); return r && r.textContent.includes('online'); })`),
		poll(`document.getElementById('count-online').textContent === '3'`),
	)
	b.fitsPhone("fleet page")
	step("open demo-01",
		chromedp.Click(chromedp.CSS(`#fleet a[href="#/devices/demo-01"]`)),
		chromedp.WaitVisible(chromedp.ID("device-details")),
		poll(`(() => { const c = document.querySelector('canvas[data-sensor="temperature"]'); return !!c && Number(c.dataset.points) >= 2; })()`),
	)
	step("set log_level and see it reported",
		chromedp.SendKeys(chromedp.ID("desired-patch"), `{"log_level": "debug"}`),
		chromedp.Click(chromedp.CSS(`#patch-form button[type=submit]`)),
		poll(`document.getElementById('shadow-desired').textContent.includes('"log_level": "debug"')`),
		poll(`document.getElementById('shadow-reported').textContent.includes('"log_level": "debug"')`),
	)
	b.fitsPhone("device page")
	if os.Getenv("WEBUI_SCREENSHOT") != "" {
		screenshot(t, b.bctx, "demo-device")
	}
	step("sign out",
		chromedp.Click(chromedp.ID("logout")),
		chromedp.WaitVisible(chromedp.ID("password")),
	)
	b.checkProblems(func(p string) bool {
		// Chrome logs every failed fetch; the shadows of a fresh device
		// may not exist yet.
		return strings.Contains(p, "status of 404") && strings.Contains(p, "/shadow")
	})
	if t.Failed() || os.Getenv("WEBUI_SCREENSHOT") != "" {
		screenshot(t, b.bctx, "demo-end")
	}
}

// fitsPhone emulates a 375×800 phone screen and fails the test when the
// page is wider than the screen (it would scroll sideways), naming the
// elements that stick out; then it restores the window's viewport.
func (b *browser) fitsPhone(page string) {
	b.t.Helper()
	b.step(page+" at phone width",
		chromedp.EmulateViewport(375, 800),
		b.poll(`window.innerWidth === 375`),
	)
	type result struct {
		ScrollWidth int      `json:"scrollWidth"`
		InnerWidth  int      `json:"innerWidth"`
		Wide        []string `json:"wide"`
	}
	res, err := chromedp.Run(b.ctx, chromedp.Evaluate[result](`(() => {
		const w = window.innerWidth;
		const wide = [...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > w + 0.5 && !e.closest('.table-wrap'))
			.slice(0, 5).map((e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className ? '.' + String(e.className).split(' ').join('.') : '') + ' right=' + Math.round(e.getBoundingClientRect().right));
		return { scrollWidth: document.documentElement.scrollWidth, innerWidth: w, wide };
	})()`))
	if err == nil {
		err = chromedp.Do(b.ctx, chromedp.ResetViewport())
	}
	if err != nil {
		b.t.Fatalf("%s at phone width: %v", page, err)
	}
	b.t.Logf("%s at 375 px: document %d px wide, viewport %d px", page, res.ScrollWidth, res.InnerWidth)
	if res.ScrollWidth > res.InnerWidth {
		screenshot(b.t, b.bctx, page+" phone")
		b.t.Errorf("%s at 375 px: document is %d px wide, more than the %d px viewport; wide elements: %q", page, res.ScrollWidth, res.InnerWidth, res.Wide)
	}
}
