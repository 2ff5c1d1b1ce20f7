package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/outpost-edge/outpost/internal/sim"
	"github.com/spf13/cobra"
)

func newSimCmd(g *globals) *cobra.Command {
	o := sim.Options{Devices: 10, Rate: 1, QoS: 1}
	var (
		labels    []string
		sourceIPs []string
		qos       uint8
		logLevel  string
	)
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Run a fleet of simulated devices against a hub (load generator)",
		Long: `sim enrolls N simulated devices with a running hub through its REST API, joins each
with its own credentials and connects each over its own MQTT connection. Every device
publishes compact protobuf telemetry (simulated temperature, humidity and vibration) at
--rate points per second and answers its device shadow like an agent: each delta it
receives is reported back as applied. Devices also take the jobs the hub sends them
(AWS IoT Jobs layout, e.g. from "outpost rollouts create"): IN_PROGRESS, then after
--job-duration SUCCEEDED, or FAILED for the --job-fail-fraction of devices chosen to fail.

At --qos 1 and 2 it measures publish latency: for every telemetry publish, the time from
the publish call to the broker's acknowledgement (PUBACK; PUBCOMP at QoS 2), a wait for
a free slot of the connection's in-flight window included. The hub's embedded broker
acknowledges a batch only after committing it, so against the hub this is the time until
the points are durably stored; against another broker (--mqtt) it is only its routing
and acknowledgement. The summary prints p50, p90, p99, the maximum and the mean, kept in
a fixed-size histogram (percentiles within 1%), and the progress line printed every
second shows the acknowledged points/s and the publish p99 so far.

With --probes it measures the shadow round trip: the desired state of a device is set
through the REST API and the clock stops when the device sees the hub accept its report
of the same value. It prints p50, p90, p99 and the maximum.

Devices are named PREFIX-00001, PREFIX-00002, … and labelled simulated=true. Devices
that exist already (from an earlier run) get a fresh join token; their labels are not
changed. --cleanup removes them at the end.

One source address reaches one broker address and port with at most as many
connections as the local port range holds (net.ipv4.ip_local_port_range, about 28,000
by default), so a fleet beyond that fails to connect with "cannot assign requested
address". --source-ips spreads the devices' MQTT connections over several local
addresses, round-robin: an address, a range FIRST-LAST of one family, or a list of
them separated by commas. On Linux every address of 127.0.0.0/8 is local, so
--source-ips 127.0.0.2-127.0.0.9 gives a fleet against a hub on 127.0.0.1 eight times
the ports; elsewhere the addresses must be assigned to an interface.

Simulated devices keep no spool: a point that cannot be published is counted as failed,
not retried. The hub needs an admin token (outpost login, --token or $OUTPOST_TOKEN).`,
		Example: `  outpost sim --devices 100 --rate 10 --duration 1m
  outpost sim --devices 200 --rate 100 --duration 15s --qos 1   # publish → stored latency
  outpost sim --devices 1000 --rate 0 --probes 2000 --probe-concurrency 10
  outpost sim --devices 10000 --connect-rate 1000 --probes 5000 --cleanup -o json
  outpost sim --devices 50000 --rate 0 --connect-rate 2000 --source-ips 127.0.0.2-127.0.0.9   # beyond one address's ports
  outpost sim --hub http://hub.example:8080 --mqtt mqtt://hub.example:1883 --devices 50
  outpost sim --devices 1000 --rate 0 --job-fail-fraction 0.02 --duration 10m   # a fleet for a rollout`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(g.stderr, logLevel)
			if err != nil {
				return err
			}
			if o.Labels, err = parseLabels(labels); err != nil {
				return err
			}
			// A bad --source-ips is reported with the other problems.
			var srcErr error
			o.SourceIPs, srcErr = sim.ParseSourceIPs(sourceIPs)
			o.QoS = qos
			if err := errors.Join(srcErr, o.Validate()); err != nil {
				return err
			}
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			o.HubURL, o.Logger, o.Progress = c.base, logger, g.stderr
			// Enrollments and probes run concurrently: keep their
			// connections to the hub alive between requests.
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.MaxIdleConnsPerHost = 256
			c.http.Transport = tr
			o.HTTPClient = &http.Client{Timeout: clientTimeout, Transport: tr}
			res, err := sim.Run(cmd.Context(), restSimHub{c}, o)
			if err != nil {
				return err
			}
			if g.jsonOutput() {
				if err := writeJSONValue(g.stdout, res); err != nil {
					return err
				}
			} else {
				printSimResult(g, res)
			}
			if res.Shadow != nil && res.Shadow.Failed > 0 {
				return fmt.Errorf("%d of %d shadow round trips failed; the first: %s", res.Shadow.Failed, res.Shadow.Probes, res.Shadow.FirstError)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Devices, "devices", o.Devices, fmt.Sprintf("number of simulated devices (1 to %d)", sim.MaxDevices))
	f.Float64Var(&o.Rate, "rate", o.Rate, "telemetry points per second per device (0: none)")
	f.DurationVar(&o.PublishEvery, "publish-every", time.Second, "how often each device publishes its collected points as one batch")
	f.Uint8Var(&qos, "qos", 1, "MQTT QoS of telemetry: 0, 1 or 2")
	f.StringVar(&o.Prefix, "prefix", "sim", "device id prefix: devices are PREFIX-00001, PREFIX-00002, …")
	f.StringArrayVarP(&labels, "label", "l", nil, "extra label on new devices as key=value (repeatable)")
	f.StringVar(&o.MQTTURL, "mqtt", "", "broker URL to connect to instead of the one the hub hands out at join")
	f.StringSliceVar(&sourceIPs, "source-ips", nil, "local addresses the MQTT connections come from, round-robin: IP, FIRST-LAST or a comma-separated list (default: the system's choice)")
	f.IntVar(&o.ConnectRate, "connect-rate", 500, "devices that start connecting per second")
	f.DurationVar(&o.ConnectTimeout, "connect-timeout", 0, "how long to wait for the whole fleet to connect (default 1m plus devices/connect-rate seconds)")
	f.IntVar(&o.EnrollConcurrency, "enroll-concurrency", 16, "enrollments in flight at once (1 to 256)")
	f.IntVar(&o.Probes, "probes", 0, "shadow round trips to measure once the fleet is connected")
	f.IntVar(&o.ProbeConcurrency, "probe-concurrency", 1, "round trips in flight at once, each on its own device")
	f.DurationVar(&o.ProbeTimeout, "probe-timeout", 10*time.Second, "a round trip slower than this counts as failed")
	f.DurationVar(&o.Duration, "duration", 0, "run this long after connecting (and probing); default: until interrupted, or stop after the probes")
	f.BoolVar(&o.Cleanup, "cleanup", false, "remove the simulated devices from the hub at the end")
	f.DurationVar(&o.JobDuration, "job-duration", 100*time.Millisecond, "how long a device takes over a job (e.g. a rollout's) before it reports the outcome")
	f.Float64Var(&o.JobFailFraction, "job-fail-fraction", 0, "share of the devices (0 to 1, the same ones every run) that fail every job")
	f.StringVar(&logLevel, "log-level", "warn", "log level: debug, info, warn or error")
	return cmd
}

func printSimResult(g *globals, r *sim.Result) {
	w := g.stdout
	fmt.Fprintf(w, "devices     %d enrolled in %s, %d connected in %s, %d reconnects\n",
		r.Enrolled, roundElapsed(r.Enroll), r.Connected, roundElapsed(r.Connect), r.Reconnects)
	t := r.Telemetry
	fmt.Fprintf(w, "telemetry   %d points sent, %d acknowledged, %d failed in %s (%.0f points/s)\n",
		t.Sent, t.Acked, t.Failed, roundElapsed(t.Elapsed), t.PointsPerSecond())
	if p := r.Publish; p != nil && p.Count > 0 {
		fmt.Fprintf(w, "publish     p50 %s  p90 %s  p99 %s  max %s  mean %s\n",
			ms(p.P50), ms(p.P90), ms(p.P99), ms(p.Max), ms(p.Mean))
	}
	if j := r.Jobs; j.Succeeded+j.Failed > 0 {
		fmt.Fprintf(w, "jobs        %d succeeded, %d failed\n", j.Succeeded, j.Failed)
	}
	if s := r.Shadow; s != nil {
		fmt.Fprintf(w, "shadow      %d round trips: %d ok, %d failed\n", s.Probes, s.OK, s.Failed)
		if s.OK > 0 {
			fmt.Fprintf(w, "round trip  p50 %s  p90 %s  p99 %s  max %s  mean %s\n",
				ms(s.P50), ms(s.P90), ms(s.P99), ms(s.Max), ms(s.Mean))
		}
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

// restSimHub is sim.Hub over the hub's REST API.
type restSimHub struct{ c *client }

var _ sim.Hub = restSimHub{}

func (h restSimHub) Enroll(ctx context.Context, id string, labels map[string]string) (string, error) {
	req := struct {
		ID     string            `json:"id"`
		Labels map[string]string `json:"labels,omitempty"`
	}{ID: id, Labels: labels}
	var resp joinResponse
	_, err := h.c.doJSON(ctx, http.MethodPost, pathDevices, nil, req, &resp)
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == http.StatusConflict {
		_, err = h.c.doJSON(ctx, http.MethodPost, devicePath(id, "/join-token"), nil, nil, &resp)
	}
	if err != nil {
		return "", err
	}
	return resp.JoinToken, nil
}

func (h restSimHub) PatchDesired(ctx context.Context, id string, desired map[string]any) error {
	path, q := shadowPath(id, "")
	_, err := h.c.do(ctx, http.MethodPatch, path, q, desired)
	return err
}

func (h restSimHub) Remove(ctx context.Context, id string) error {
	_, err := h.c.do(ctx, http.MethodDelete, devicePath(id, ""), nil, nil)
	return err
}
