package sim

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/join"
	"github.com/outpost-edge/outpost/protocol"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"
)

// Hub is what a simulation needs of the hub's REST API besides joining.
type Hub interface {
	// Enroll registers device id with labels, or issues a fresh join token
	// if it exists already, and returns a one-time join token.
	Enroll(ctx context.Context, id string, labels map[string]string) (string, error)
	// PatchDesired merges desired into the desired state of the device's
	// classic shadow.
	PatchDesired(ctx context.Context, id string, desired map[string]any) error
	// Remove deletes the device.
	Remove(ctx context.Context, id string) error
}

// Limits of the options.
const (
	MaxDevices     = 100_000
	MaxRate        = 10_000 // points per second per device
	maxIDPrefixLen = 40
)

// Options configure a simulation. The zero values of the optional fields
// mean the defaults documented on each.
type Options struct {
	// HubURL is the hub's HTTP URL, used to join.
	HubURL string
	// MQTTURL, if set, replaces the broker URL the hub hands out at join,
	// for a hub behind a proxy or a different network name.
	MQTTURL string
	// SourceIPs, if set, are the local addresses the devices' MQTT
	// connections come from, device i's from SourceIPs[i%len]: one source
	// address reaches one broker port with at most as many connections as
	// the local port range holds (about 28,000 on Linux by default). See
	// ParseSourceIPs. Empty lets the system choose.
	SourceIPs []netip.Addr
	// Devices is how many devices to simulate (1 to MaxDevices).
	Devices int
	// Prefix names the devices Prefix-00001, Prefix-00002, …; default "sim".
	Prefix string
	// Labels are set on every device, besides simulated=true.
	Labels map[string]string
	// Rate is telemetry points per second per device; 0 sends none.
	Rate float64
	// PublishEvery is how often a device publishes the points it has
	// collected; default 1s.
	PublishEvery time.Duration
	// QoS of telemetry publishes (0, 1 or 2); default 1.
	QoS byte
	// ConnectRate is how many devices start connecting per second;
	// default 500.
	ConnectRate int
	// ConnectTimeout bounds the wait for the whole fleet to connect;
	// default 60s plus the time ConnectRate needs.
	ConnectTimeout time.Duration
	// EnrollConcurrency is how many enrollments run at once; default 16.
	EnrollConcurrency int
	// Probes is how many shadow round trips to measure once the fleet is
	// connected; 0 measures none.
	Probes int
	// ProbeConcurrency is how many round trips are in flight at once, each
	// on its own device; default 1, at most Devices.
	ProbeConcurrency int
	// ProbeTimeout bounds one round trip; default 10s.
	ProbeTimeout time.Duration
	// Duration is how long the fleet runs after it connected and the
	// probes finished. 0 means until ctx ends, or, when Probes is set,
	// stop right after the probes.
	Duration time.Duration
	// Cleanup removes the simulated devices from the hub at the end.
	Cleanup bool
	// JobDuration is how long a device takes over a job (AWS IoT Jobs
	// layout: an OTA job of a rollout, say) between IN_PROGRESS and its
	// outcome; default 100ms.
	JobDuration time.Duration
	// JobFailFraction is the share of devices that fail every job (0 to
	// 1), chosen by a hash of the device id: the same devices on every run.
	JobFailFraction float64
	// FailJob, if set, decides instead whether a device fails a job.
	FailJob func(deviceID, jobID string) bool
	// Progress, if not nil, receives a line per phase and per second of
	// long phases.
	Progress io.Writer
	// Logger logs connection trouble; nil discards.
	Logger *slog.Logger
	// HTTPClient is used to join; nil means a client with a 30s timeout.
	HTTPClient *http.Client
}

func (o *Options) setDefaults() {
	if o.Prefix == "" {
		o.Prefix = "sim"
	}
	if o.PublishEvery == 0 {
		o.PublishEvery = time.Second
	}
	if o.ConnectRate == 0 {
		o.ConnectRate = 500
	}
	if o.ConnectTimeout == 0 && o.ConnectRate > 0 {
		o.ConnectTimeout = time.Minute + time.Duration(o.Devices/o.ConnectRate)*time.Second
	}
	if o.EnrollConcurrency == 0 {
		o.EnrollConcurrency = 16
	}
	if o.ProbeConcurrency == 0 {
		o.ProbeConcurrency = 1
	}
	if o.ProbeTimeout == 0 {
		o.ProbeTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.JobDuration == 0 {
		o.JobDuration = 100 * time.Millisecond
	}
	if o.FailJob == nil {
		frac := o.JobFailFraction
		o.FailJob = func(id, _ string) bool { return FailsJobs(id, frac) }
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// syncWriter serializes writes: progress lines come from several
// goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// Validate reports every problem of o at once. It applies the defaults
// first, so a zero optional field is fine. An empty HubURL passes here,
// so that a command line can be checked before the hub is known; Run
// requires it.
func (o Options) Validate() error {
	o.setDefaults()
	var errs []error
	if u, err := url.Parse(o.HubURL); o.HubURL != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
		errs = append(errs, fmt.Errorf("hub URL %q must be http://host[:port] or https://host[:port]", o.HubURL))
	}
	if o.MQTTURL != "" {
		if u, err := url.Parse(o.MQTTURL); err != nil || !slices.Contains([]string{"mqtt", "tcp", "mqtts", "ssl", "tls"}, u.Scheme) || u.Host == "" {
			errs = append(errs, fmt.Errorf("MQTT URL %q must be mqtt://host:port or mqtts://host:port", o.MQTTURL))
		}
	}
	if len(o.SourceIPs) > MaxSourceIPs {
		errs = append(errs, fmt.Errorf("at most %d source IPs, got %d", MaxSourceIPs, len(o.SourceIPs)))
	}
	for _, a := range o.SourceIPs {
		if err := checkSourceIP(a); err != nil {
			errs = append(errs, fmt.Errorf("source IP: %w", err))
		}
	}
	if o.Devices < 1 || o.Devices > MaxDevices {
		errs = append(errs, fmt.Errorf("devices must be 1 to %d, got %d", MaxDevices, o.Devices))
	}
	if len(o.Prefix) > maxIDPrefixLen {
		errs = append(errs, fmt.Errorf("device id prefix %q is longer than %d characters", o.Prefix, maxIDPrefixLen))
	} else if err := protocol.ValidDeviceID(deviceID(o.Prefix, 1)); err != nil {
		errs = append(errs, fmt.Errorf("device id prefix %q: %w", o.Prefix, err))
	}
	if o.Rate < 0 || o.Rate > MaxRate {
		errs = append(errs, fmt.Errorf("rate must be 0 to %d points per second per device, got %g", MaxRate, o.Rate))
	}
	if o.PublishEvery < 10*time.Millisecond || o.PublishEvery > time.Hour {
		errs = append(errs, fmt.Errorf("publish interval must be 10ms to 1h, got %s", o.PublishEvery))
	}
	if pts := o.Rate * o.PublishEvery.Seconds(); pts > protocol.MaxPointsPerBatch {
		errs = append(errs, fmt.Errorf("rate × publish interval is %.0f points per batch, more than the %d a batch may hold: publish more often", pts, protocol.MaxPointsPerBatch))
	}
	if o.QoS > 2 {
		errs = append(errs, fmt.Errorf("QoS must be 0, 1 or 2, got %d", o.QoS))
	}
	if o.ConnectRate < 1 {
		errs = append(errs, fmt.Errorf("connect rate must be at least 1 per second, got %d", o.ConnectRate))
	}
	if o.ConnectTimeout < 0 {
		errs = append(errs, fmt.Errorf("connect timeout must not be negative, got %s", o.ConnectTimeout))
	}
	if o.EnrollConcurrency < 1 || o.EnrollConcurrency > 256 {
		errs = append(errs, fmt.Errorf("enroll concurrency must be 1 to 256, got %d", o.EnrollConcurrency))
	}
	if o.Probes < 0 {
		errs = append(errs, fmt.Errorf("probes must not be negative, got %d", o.Probes))
	}
	if o.ProbeConcurrency < 1 || (o.Devices > 0 && o.ProbeConcurrency > o.Devices) {
		errs = append(errs, fmt.Errorf("probe concurrency must be 1 to the number of devices (%d), got %d", o.Devices, o.ProbeConcurrency))
	}
	if o.ProbeTimeout < 0 {
		errs = append(errs, fmt.Errorf("probe timeout must not be negative, got %s", o.ProbeTimeout))
	}
	if o.Duration < 0 {
		errs = append(errs, fmt.Errorf("duration must not be negative, got %s", o.Duration))
	}
	if o.JobDuration < 0 || o.JobDuration > time.Hour {
		errs = append(errs, fmt.Errorf("job duration must be 0 to 1h, got %s", o.JobDuration))
	}
	if o.JobFailFraction < 0 || o.JobFailFraction > 1 {
		errs = append(errs, fmt.Errorf("job failure fraction must be 0 to 1, got %g", o.JobFailFraction))
	}
	if _, ok := o.Labels["simulated"]; ok {
		errs = append(errs, errors.New(`label "simulated" is set by the simulator (simulated=true)`))
	}
	return errors.Join(errs...)
}

func deviceID(prefix string, i int) string { return fmt.Sprintf("%s-%05d", prefix, i) }

// Result is what a simulation measured.
type Result struct {
	Devices   int           `json:"devices"`
	Enrolled  int           `json:"enrolled"`
	Connected int           `json:"connected"`
	Enroll    time.Duration `json:"enroll_ns"`
	Connect   time.Duration `json:"connect_ns"`
	// Reconnects counts connections beyond each device's first.
	Reconnects uint64 `json:"reconnects"`
	// Telemetry is counted from the end of the connect phase to the stop.
	Telemetry Telemetry `json:"telemetry"`
	// Publish is the latency of the telemetry publishes in the same
	// window as Telemetry, for QoS 1 and 2; nil at QoS 0 or rate 0.
	Publish *PublishLatency `json:"publish,omitempty"`
	// Shadow is the round-trip measurement, if probes were asked for.
	Shadow *Latency `json:"shadow,omitempty"`
	// Jobs counts the jobs the devices ended.
	Jobs JobCounts `json:"jobs"`
}

// JobCounts counts jobs by outcome.
type JobCounts struct {
	Succeeded uint64 `json:"succeeded"`
	Failed    uint64 `json:"failed"`
}

// FailsJobs reports whether device id is among the fraction of devices
// that fail their jobs: a hash of the id, so the same devices every run.
func FailsJobs(id string, fraction float64) bool {
	if fraction <= 0 {
		return false
	}
	h := fnv.New64a()
	h.Write([]byte(id))
	return float64(h.Sum64()%10000) < fraction*10000
}

// Telemetry counts the points the fleet published.
type Telemetry struct {
	Sent uint64 `json:"points_sent"`
	// Acked points were acknowledged by the broker (QoS 1 and 2); at QoS 0
	// it equals Sent.
	Acked uint64 `json:"points_acked"`
	// Failed points could not be published: not connected, refused or
	// timed out. A simulated device does not retry them.
	Failed  uint64        `json:"points_failed"`
	Elapsed time.Duration `json:"elapsed_ns"`
}

// PointsPerSecond is the acknowledged rate.
func (t Telemetry) PointsPerSecond() float64 {
	if t.Elapsed <= 0 {
		return 0
	}
	return float64(t.Acked) / t.Elapsed.Seconds()
}

// Run enrolls and connects the fleet, measures the shadow round trips, runs
// for the asked duration and returns what it measured. It returns an error
// only when the fleet could not be started at all: a partial fleet is run
// and reported.
func Run(ctx context.Context, hub Hub, o Options) (*Result, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.HubURL == "" {
		return nil, errors.New("the hub URL is not set")
	}
	o.setDefaults()
	if o.Progress != io.Discard {
		o.Progress = &syncWriter{w: o.Progress}
	}
	f := &fleet{o: o, hub: hub, runID: fmt.Sprintf("%x", rand.Uint32())}
	f.telemetryCtx, f.stopTelemetry = context.WithCancel(context.Background())
	defer f.stopTelemetry()
	res := &Result{Devices: o.Devices}

	start := time.Now()
	if err := f.enroll(ctx); err != nil {
		return nil, err
	}
	res.Enrolled, res.Enroll = len(f.devices), time.Since(start)

	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	defer f.close()
	start = time.Now()
	res.Connected = f.connect(ctx, runCtx)
	res.Connect = time.Since(start)
	if res.Connected == 0 {
		return res, errors.New("no simulated device could connect to the broker; see the log for why")
	}

	f.counting.Store(true)
	telemetryStart := time.Now()
	if o.Probes > 0 {
		lat := f.probe(ctx)
		res.Shadow = &lat
	}
	if ctx.Err() == nil && (o.Duration > 0 || o.Probes == 0) {
		f.runFor(ctx, o.Duration)
	}
	// Stop publishing and wait for the batches in flight, so that every
	// batch counted as sent is counted as acknowledged or failed too.
	elapsed := time.Since(telemetryStart)
	f.counting.Store(false)
	f.stopTelemetry()
	f.wg.Wait()
	res.Telemetry = Telemetry{
		Sent:    f.sent.Load(),
		Acked:   f.acked.Load(),
		Failed:  f.failed.Load(),
		Elapsed: elapsed,
	}
	if o.QoS > 0 && o.Rate > 0 {
		p := f.publish.Summary()
		res.Publish = &p
	}
	for _, d := range f.devices {
		if n := d.connects.Load(); n > 1 {
			res.Reconnects += uint64(n - 1)
		}
	}
	res.Jobs = JobCounts{Succeeded: f.jobsOK.Load(), Failed: f.jobsFailed.Load()}
	stop()
	f.close()
	if o.Cleanup {
		f.cleanup()
	}
	return res, nil
}

// fleet is one simulation's devices and shared counters.
type fleet struct {
	o       Options
	hub     Hub
	runID   string
	devices []*device

	// telemetryCtx ends the devices' publishing, before their connections.
	telemetryCtx  context.Context
	stopTelemetry context.CancelFunc
	// counting gates the telemetry counters to the measured window.
	counting            atomic.Bool
	sent, acked, failed atomic.Uint64
	// publish holds the latencies of the acknowledged telemetry
	// publishes counted in acked (QoS 1 and 2 only).
	publish            Histogram
	jobsOK, jobsFailed atomic.Uint64
	closeOnce          sync.Once
	wg                 sync.WaitGroup
}

// enroll registers and joins every device, EnrollConcurrency at a time.
func (f *fleet) enroll(ctx context.Context) error {
	labels := map[string]string{"simulated": "true"}
	for k, v := range f.o.Labels {
		labels[k] = v
	}
	f.devices = make([]*device, f.o.Devices)
	var done atomic.Int64
	stopProgress := f.progressEvery(time.Second, func() string {
		return fmt.Sprintf("enrolled %d/%d devices", done.Load(), f.o.Devices)
	})
	defer stopProgress()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(f.o.EnrollConcurrency)
	for i := range f.o.Devices {
		id := deviceID(f.o.Prefix, i+1)
		g.Go(func() error {
			tok, err := f.hub.Enroll(gctx, id, labels)
			if err != nil {
				return fmt.Errorf("enrolling %s: %w", id, err)
			}
			joined, err := join.Join(gctx, f.o.HubURL, tok, f.o.HTTPClient)
			cfg := joined.Config
			if err != nil {
				return fmt.Errorf("joining %s: %w", id, err)
			}
			mqttURL := cfg.MQTT.URL
			if f.o.MQTTURL != "" {
				mqttURL = f.o.MQTTURL
			}
			d, err := newDevice(f, i, cfg.DeviceID, cfg.MQTT.Username, cfg.MQTT.Password, mqttURL)
			if err != nil {
				return fmt.Errorf("device %s: %w", id, err)
			}
			f.devices[i] = d
			done.Add(1)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	fmt.Fprintf(f.o.Progress, "enrolled %d devices\n", f.o.Devices)
	return nil
}

// connect starts the devices' connections at ConnectRate and waits until
// each has connected and subscribed, or ConnectTimeout passes. It returns
// how many are ready.
func (f *fleet) connect(ctx, runCtx context.Context) int {
	lim := rate.NewLimiter(rate.Limit(f.o.ConnectRate), max(1, f.o.ConnectRate/10))
	var ready atomic.Int64
	stopProgress := f.progressEvery(time.Second, func() string {
		return fmt.Sprintf("connected %d/%d devices", ready.Load(), f.o.Devices)
	})
	defer stopProgress()

	deadline := time.Now().Add(f.o.ConnectTimeout)
	waitCtx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var waiters sync.WaitGroup
	for _, d := range f.devices {
		if lim.Wait(waitCtx) != nil {
			break
		}
		if err := d.start(runCtx); err != nil {
			f.o.Logger.Warn("starting device connection", "device", d.id, "err", err)
			continue
		}
		waiters.Go(func() {
			select {
			case <-d.ready:
				ready.Add(1)
			case <-waitCtx.Done():
			}
		})
	}
	waiters.Wait()
	n := int(ready.Load())
	fmt.Fprintf(f.o.Progress, "connected %d/%d devices\n", n, f.o.Devices)
	return n
}

// runFor lets the fleet run for d, or until ctx ends when d is 0, printing
// every second the acknowledged rate over that second, the points
// acknowledged and failed since the measured window opened and, at QoS 1
// and 2, the publish p99 over the window so far.
func (f *fleet) runFor(ctx context.Context, d time.Duration) {
	if d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	last, lastAt := f.acked.Load(), time.Now()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if f.o.Progress == io.Discard {
				continue
			}
			acked := f.acked.Load()
			line := fmt.Sprintf("%d devices connected, %.0f points/s acknowledged (%d in all), %d points failed",
				f.connectedNow(), float64(acked-last)/now.Sub(lastAt).Seconds(), acked, f.failed.Load())
			if f.o.QoS > 0 && f.o.Rate > 0 {
				line += fmt.Sprintf(", publish p99 %.1fms", float64(f.publish.Summary().P99)/float64(time.Millisecond))
			}
			fmt.Fprintln(f.o.Progress, line)
			last, lastAt = acked, now
		}
	}
}

func (f *fleet) connectedNow() int {
	n := 0
	for _, d := range f.devices {
		if d.connected.Load() {
			n++
		}
	}
	return n
}

// close disconnects every device and waits for their goroutines.
func (f *fleet) close() {
	f.closeOnce.Do(func() {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 64)
		for _, d := range f.devices {
			if d == nil {
				continue
			}
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				d.stop()
			})
		}
		wg.Wait()
		f.stopTelemetry()
		f.wg.Wait()
	})
}

// cleanup removes the fleet's devices from the hub.
func (f *fleet) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(f.o.EnrollConcurrency)
	var failed atomic.Int64
	for i := range f.o.Devices {
		id := deviceID(f.o.Prefix, i+1)
		g.Go(func() error {
			if err := f.hub.Remove(gctx, id); err != nil {
				failed.Add(1)
				f.o.Logger.Warn("removing simulated device", "device", id, "err", err)
			}
			return nil
		})
	}
	_ = g.Wait()
	if n := failed.Load(); n > 0 {
		fmt.Fprintf(f.o.Progress, "removed %d devices; %d could not be removed\n", int64(f.o.Devices)-n, n)
	} else {
		fmt.Fprintf(f.o.Progress, "removed %d devices\n", f.o.Devices)
	}
}

// progressEvery prints line() every period until the returned func is
// called.
func (f *fleet) progressEvery(period time.Duration, line func() string) func() {
	if f.o.Progress == io.Discard {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintln(f.o.Progress, line())
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
