package webui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/eclipse/paho.golang/paho"
	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hub/webui"
	"github.com/outpost-edge/outpost/protocol"
)

// findBrowser returns the path of a Chromium or Chrome binary: $CHROME if
// set, else the first of the usual names on $PATH.
func findBrowser() string {
	if p := os.Getenv("CHROME"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// TestBrowser drives the dashboard in headless Chromium against a real
// hub: sign in, find the device in the fleet, see another one added
// arrive over the event stream, open the first, wait for its chart
// to be drawn, patch its desired state. The page must log no error (a
// CSP refusal or a failed request would be one).
func TestBrowser(t *testing.T) {
	b := startBrowser(t)
	h := hubtest.Start(t)
	const id = "pump-7"
	pass := h.AddDevice(t, id)
	publishTelemetry(t, h.MQTTAddr(), id, pass, 21.5, 22, 22.5, 23, 22.75)
	step, poll, bctx := b.step, b.poll, b.bctx

	clear := func(id string) chromedp.Action[chromedp.Void] {
		return chromedp.Evaluate[chromedp.Void](`document.getElementById('` + id + `').value = ''`)
	}
	step("sign in",
		chromedp.Navigate(h.HTTPURL()+"/"),
		chromedp.WaitVisible(chromedp.ID("password")),
		clear("username"),
		chromedp.SendKeys(chromedp.ID("username"), "admin"),
		chromedp.SendKeys(chromedp.ID("password"), h.AdminPassword(t)+"\r"),
	)
	step("device in the fleet table",
		chromedp.WaitVisible(chromedp.CSS(`#fleet tr[data-device="`+id+`"]`)),
		poll(`document.querySelector('#fleet tr[data-device="`+id+`"]').textContent.includes('online')`),
		poll(`document.getElementById('count-devices').textContent === '1' && document.getElementById('count-online').textContent === '1'`),
	)
	step("fleet is live",
		poll(`document.getElementById('fleet-updates').textContent.startsWith('Live')`),
	)
	h.AddDevice(t, "pump-8")
	step("a new device appears live",
		poll(`(() => { const r = document.querySelector('#fleet tr[data-device="pump-8"]'); return !!r && r.textContent.includes('offline'); })()`),
		poll(`document.getElementById('count-devices').textContent === '2' && document.getElementById('count-offline').textContent === '1'`),
	)
	if os.Getenv("WEBUI_SCREENSHOT") != "" {
		screenshot(t, bctx, "fleet")
	}
	step("open the device",
		chromedp.Click(chromedp.CSS(`#fleet a[href="#/devices/`+id+`"]`)),
		chromedp.WaitVisible(chromedp.ID("device-details")),
		poll(`(() => { const c = document.querySelector('canvas[data-sensor="temperature"]'); return !!c && Number(c.dataset.points) === 5; })()`),
	)
	step("refuse a bad patch inline",
		chromedp.SendKeys(chromedp.ID("desired-patch"), `{"a": [null]}`),
		chromedp.Click(chromedp.CSS(`#patch-form button[type=submit]`)),
		poll(`document.getElementById('patch-result').textContent.includes('refused')`),
		clear("desired-patch"),
	)
	step("patch the desired state",
		chromedp.SendKeys(chromedp.ID("desired-patch"), `{"log": {"level": "debug"}}`),
		chromedp.Click(chromedp.CSS(`#patch-form button[type=submit]`)),
		poll(`document.getElementById('shadow-desired').textContent.includes('"debug"')`),
		poll(`document.getElementById('shadow-delta').textContent.includes('"debug"')`),
	)
	var doc struct {
		State struct {
			Desired map[string]map[string]string
		}
	}
	h.API(t, "GET", "/api/v1/devices/"+id+"/shadow", nil, http.StatusOK, &doc)
	if got := doc.State.Desired["log"]["level"]; got != "debug" {
		t.Errorf("hub's desired log.level = %q, want debug", got)
	}
	step("other pages render",
		chromedp.Navigate(h.HTTPURL()+"/#/rollouts"),
		poll(`document.getElementById('rollouts') && document.getElementById('rollouts').textContent.includes('No rollouts')`),
		chromedp.Navigate(h.HTTPURL()+"/#/deployments"),
		poll(`document.getElementById('deployments') && document.getElementById('deployments').textContent.includes('No deployments')`),
	)
	step("back to the device",
		chromedp.Navigate(h.HTTPURL()+"/#/devices/"+id),
		poll(`document.querySelector('canvas[data-sensor="temperature"]') && document.querySelector('canvas[data-sensor="temperature"]').dataset.points === '5'`),
	)
	if os.Getenv("WEBUI_SCREENSHOT") != "" {
		screenshot(t, bctx, "device")
	}
	step("sign out",
		chromedp.Click(chromedp.ID("logout")),
		chromedp.WaitVisible(chromedp.ID("password")),
	)
	b.checkProblems(func(p string) bool {
		// Chrome logs every failed fetch. Expected: the bad patch's 400 and
		// the 404s of shadows that do not exist yet.
		return (strings.Contains(p, "status of 400") || strings.Contains(p, "status of 404")) && strings.Contains(p, "/shadow")
	})
	if t.Failed() || os.Getenv("WEBUI_SCREENSHOT") != "" {
		screenshot(t, bctx, "end")
	}
}

// browser is a headless Chromium for one test, with the page's errors.
type browser struct {
	t    *testing.T
	bctx context.Context // the browser's context, without deadline
	ctx  context.Context // bctx with the test's deadline

	mu       sync.Mutex
	problems []string // guarded by mu
}

// startBrowser starts headless Chromium until the test ends; it skips the
// test when there is none, or fails it under CI=true.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	exe := findBrowser()
	if exe == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("no chromium or chrome binary on PATH (CI=true); install Debian's chromium")
		}
		t.Skip("no chromium or chrome binary on PATH; install chromium to run this test")
	}
	b := &browser{t: t}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-gpu", true), chromedp.WindowSize(1280, 900))...)
	bctx, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithListener(func(ev any) {
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			d := e.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			b.note(fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber, msg))
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				b.note(fmt.Sprintf("console.error: %v", e.Args))
			}
		case *log.EventEntryAdded:
			if e.Entry.Level == log.EntryLevelError || strings.Contains(e.Entry.Text, "Content Security Policy") {
				b.note("browser log: " + e.Entry.Text + " " + e.Entry.URL)
			}
		}
	}))
	// Cleanups run last in, first out: the tab closes, then the browser.
	t.Cleanup(cancelAlloc)
	t.Cleanup(cancelBrowser)
	if err := chromedp.Do(bctx); err != nil { // starts the browser, without a deadline
		t.Fatalf("starting %s: %v", exe, err)
	}
	ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	t.Cleanup(cancel)
	b.bctx, b.ctx = bctx, ctx
	return b
}

func (b *browser) note(s string) { b.mu.Lock(); b.problems = append(b.problems, s); b.mu.Unlock() }

// step runs actions and fails the test, with a screenshot, on error.
func (b *browser) step(name string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		screenshot(b.t, b.bctx, name)
		b.t.Fatalf("%s: %v", name, err)
	}
}

// poll waits until the JavaScript expression is truthy.
func (b *browser) poll(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second))
}

// checkProblems fails the test for every page error that expected does
// not accept.
func (b *browser) checkProblems(expected func(string) bool) {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		if !expected(p) {
			b.t.Errorf("page problem: %s", p)
		}
	}
}

// screenshot saves the page to a new temporary directory, kept after the
// test, and logs its path.
func screenshot(t *testing.T, bctx context.Context, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(bctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	dir, err := os.MkdirTemp("", "outpost-webui-")
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	t.Logf("screenshot of the page: %s", p)
}

// publishTelemetry connects as the device over MQTT (which makes it
// online), sends one batch of temperature points spaced 8 minutes apart
// from 40 minutes ago, and stays connected until the test ends.
func publishTelemetry(t *testing.T, addr, id, pass string, values ...float64) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn, ClientID: id})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{
		ClientID: id, KeepAlive: 30, CleanStart: true,
		UsernameFlag: true, Username: id, PasswordFlag: true, Password: []byte(pass),
	})
	if err != nil || ca.ReasonCode != 0 {
		conn.Close()
		t.Fatalf("connecting as %s: %v (%+v)", id, err, ca)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	b := &outpostv1.TelemetryBatch{Device: id, SeqFirst: 1}
	start := time.Now().Add(-40 * time.Minute).UnixMilli()
	for i, v := range values {
		b.Points = append(b.Points, &outpostv1.Point{Sensor: "temperature", TsUnixMs: start + int64(i)*8*60*1000, Value: &outpostv1.Point_Num{Num: v}})
	}
	payload, err := protocol.EncodeTelemetry(b)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Publish(ctx, &paho.Publish{Topic: protocol.TelemetryTopic(id), QoS: 1, Payload: payload})
	if err != nil || resp == nil || resp.ReasonCode != 0 {
		t.Fatalf("publishing telemetry: %v (%+v)", err, resp)
	}
}

// TestBrowserRollouts checks the rollouts page against a fake API: wave
// progress bars, the buttons valid for each state, and a pause that turns
// Pause into Resume; then a device's OTA history, and the fleet page
// falling back to polling when there is no event stream. (A real rollout needs signed TUF keys; the hub's own
// tests cover the API.)
func TestBrowserRollouts(t *testing.T) {
	b := startBrowser(t)
	var (
		mu     sync.Mutex
		status = "running"
		calls  []string
	)
	rollout := func(id, st string) map[string]any {
		return map[string]any{
			"id": id, "artifact": map[string]string{"name": "pump-config", "version": "2.0.0", "type": "file"},
			"selector": map[string]string{"site": "plant-1"}, "status": st, "devices": 10,
			"waves": []string{"10%", "50%", "100%"}, "wave_bounds": []int{1, 5, 10}, "wave": 2,
			"wave_states": []map[string]any{
				{"wave": 1, "started": true, "counts": map[string]int{"devices": 1, "succeeded": 1},
					"executions": []map[string]any{{"device": "pump-1", "status": "SUCCEEDED", "status_details": map[string]string{"stage": "committed"}}}},
				{"wave": 2, "started": true, "counts": map[string]int{"devices": 4, "succeeded": 1, "failed": 1, "pending": 2},
					"executions": []map[string]any{
						{"device": "pump-2", "status": "SUCCEEDED", "status_details": map[string]string{"stage": "committed"}},
						{"device": "pump-7", "status": "FAILED", "status_details": map[string]string{"stage": "started", "reason": "not_configured", "message": "not listed under ota.files"}},
					}},
			},
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/", webui.Handler())
	writeJSON := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /api/v1/rollouts", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		writeJSON(w, map[string]any{"rollouts": []any{rollout("r-run", status), rollout("r-done", "completed")}})
	})
	mux.HandleFunc("GET /api/v1/rollouts/{id}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.PathValue("id") == "r-run" {
			writeJSON(w, rollout("r-run", status))
			return
		}
		writeJSON(w, rollout("r-done", "completed"))
	})
	mux.HandleFunc("GET /api/v1/devices", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"devices": []any{map[string]any{"id": "pump-7", "labels": map[string]string{}, "joined": true, "online": true}}})
	})
	mux.HandleFunc("GET /api/v1/devices/{id}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"id": r.PathValue("id"), "labels": map[string]string{"site": "plant-1"}, "joined": true, "online": true})
	})
	mux.HandleFunc("GET /api/v1/devices/{id}/shadow", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error":{"code":"not_found","message":"no shadow"}}`))
	})
	mux.HandleFunc("GET /api/v1/devices/{id}/telemetry", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"device": r.PathValue("id"), "points": []any{}})
	})
	mux.HandleFunc("POST /api/v1/rollouts/{id}/{verb}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, r.PathValue("id")+" "+r.PathValue("verb")+" "+r.Header.Get("Authorization"))
		if r.PathValue("verb") == "pause" {
			status = "paused"
		}
		writeJSON(w, rollout(r.PathValue("id"), status))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	sel := func(id string) string { return `document.querySelector('article[data-rollout="` + id + `"]')` }
	buttons := func(id string) string {
		return `[...` + sel(id) + `.querySelectorAll('button')].map((b) => b.textContent).join(',')`
	}
	b.step("open the rollouts page",
		chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("password")),
		chromedp.Evaluate[chromedp.Void](`sessionStorage.setItem('outpost.token', 'test-token'); location.hash = '#/rollouts'`),
		b.poll(sel("r-run")+` && `+sel("r-done")),
		b.poll(sel("r-run")+`.querySelectorAll('progress').length === 3`),
		b.poll(sel("r-run")+`.textContent.includes('1 of 4 succeeded, 1 failed, 2 pending')`),
		b.poll(buttons("r-run")+` === 'Pause,Abort'`),
		b.poll(buttons("r-done")+` === ''`),
		chromedp.Click(chromedp.CSS(`article[data-rollout="r-run"] button[data-key="pause:r-run"]`)),
		b.poll(buttons("r-run")+` === 'Resume,Abort'`),
	)
	mu.Lock()
	if want := []string{"r-run pause Bearer test-token"}; !slices.Equal(calls, want) {
		t.Errorf("API calls %q, want %q", calls, want)
	}
	mu.Unlock()
	row := func(id string) string { return `document.querySelector('#ota tr[data-rollout="` + id + `"]')` }
	b.step("OTA history on the device page",
		chromedp.Evaluate[chromedp.Void](`location.hash = '#/devices/pump-7'`),
		b.poll(row("r-run")+` && `+row("r-done")),
		b.poll(row("r-run")+`.textContent.includes('FAILED') && `+row("r-run")+`.textContent.includes('not_configured: not listed under ota.files') && `+row("r-run")+`.textContent.includes('pump-config@2.0.0')`),
		b.poll(`document.querySelectorAll('#ota tbody tr').length === 2 && !document.getElementById('ota-history').hidden`),
	)
	b.fitsPhone("device page with OTA history")
	b.step("no OTA history, no section",
		chromedp.Evaluate[chromedp.Void](`location.hash = '#/devices/pump-9'`),
		b.poll(`document.getElementById('device-details') && document.getElementById('device-details').textContent.includes('online')`),
		b.poll(`document.getElementById('ota-history') && document.getElementById('ota-history').dataset.loaded === 'true' && document.getElementById('ota-history').hidden && !document.querySelector('#ota')`),
	)
	// The fake API has no event stream: the fleet page falls back to
	// polling.
	b.step("fleet falls back to polling",
		chromedp.Evaluate[chromedp.Void](`location.hash = '#/'`),
		b.poll(`document.getElementById('fleet-updates') && document.getElementById('fleet-updates').textContent.includes('refreshed every 2 seconds')`),
		b.poll(`!!document.querySelector('#fleet tr[data-device="pump-7"]')`),
	)
	b.checkProblems(func(p string) bool {
		return strings.Contains(p, "status of 404") && (strings.Contains(p, "/shadow") || strings.Contains(p, "/api/v1/events/devices"))
	})
	if t.Failed() || os.Getenv("WEBUI_SCREENSHOT") != "" {
		screenshot(t, b.bctx, "rollouts")
	}
}
