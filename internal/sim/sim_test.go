package sim

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	var rtts []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		rtts = append(rtts, time.Duration(i)*time.Millisecond)
	}
	l := summarize(103, rtts, context.DeadlineExceeded)
	want := Latency{Probes: 103, OK: 100, Failed: 3, P50: 50 * time.Millisecond, P90: 90 * time.Millisecond,
		P99: 99 * time.Millisecond, Max: 100 * time.Millisecond, Mean: 50500 * time.Microsecond, FirstError: "context deadline exceeded"}
	if l != want {
		t.Errorf("summarize = %+v\nwant        %+v", l, want)
	}
	if l := summarize(2, nil, nil); l.OK != 0 || l.Failed != 2 || l.P99 != 0 {
		t.Errorf("summarize of no successes = %+v", l)
	}
	one := summarize(1, []time.Duration{7 * time.Millisecond}, nil)
	if one.P50 != 7*time.Millisecond || one.P99 != 7*time.Millisecond || one.Max != 7*time.Millisecond {
		t.Errorf("summarize of one = %+v", one)
	}
}

func TestValidate(t *testing.T) {
	ok := Options{HubURL: "http://127.0.0.1:8080", Devices: 10, Rate: 1}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	noHub := ok
	noHub.HubURL = ""
	if err := noHub.Validate(); err != nil {
		t.Errorf("an empty hub URL must pass Validate (Run checks it): %v", err)
	}
	if _, err := Run(context.Background(), nil, noHub); err == nil || !strings.Contains(err.Error(), "hub URL is not set") {
		t.Errorf("Run without hub URL: %v", err)
	}
	bad := Options{HubURL: "ftp://x", MQTTURL: "http://x", Devices: MaxDevices + 1, Rate: -1, QoS: 3,
		ConnectRate: -1, EnrollConcurrency: 300, Probes: -1, ProbeConcurrency: -1, Duration: -time.Second,
		Prefix: "no spaces", Labels: map[string]string{"simulated": "x"}}
	err := bad.Validate()
	if err == nil {
		t.Fatal("bad options passed")
	}
	for _, want := range []string{"hub URL", "MQTT URL", "devices must be", "rate must be", "QoS", "connect rate",
		"enroll concurrency", "probes must not", "probe concurrency", "duration", "prefix", `label "simulated"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
}
