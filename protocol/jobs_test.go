package protocol

import (
	"errors"
	"strings"
	"testing"
)

func TestJobsTopicRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		id, job, op, suffix string
		want                string
		request             bool
	}{
		{"dev-1", "", JobsOpNotifyNext, "", "$aws/things/dev-1/jobs/notify-next", false},
		{"dev-1", "", JobsOpNotify, "", "$aws/things/dev-1/jobs/notify", false},
		{"dev-1", JobsNext, JobsOpGet, "", "$aws/things/dev-1/jobs/$next/get", true},
		{"dev-1", JobsNext, JobsOpGet, JobsAccepted, "$aws/things/dev-1/jobs/$next/get/accepted", false},
		{"dev-1", "", JobsOpStartNext, "", "$aws/things/dev-1/jobs/start-next", true},
		{"dev-1", "", JobsOpStartNext, JobsRejected, "$aws/things/dev-1/jobs/start-next/rejected", false},
		{"dev-1", "ota_42", JobsOpGet, "", "$aws/things/dev-1/jobs/ota_42/get", true},
		{"dev-1", "ota_42", JobsOpUpdate, "", "$aws/things/dev-1/jobs/ota_42/update", true},
		{"dev-1", "ota_42", JobsOpUpdate, JobsAccepted, "$aws/things/dev-1/jobs/ota_42/update/accepted", false},
		{"dev-1", "notify", JobsOpGet, "", "$aws/things/dev-1/jobs/notify/get", true},
		{"dev-1", "start-next", JobsOpUpdate, "", "$aws/things/dev-1/jobs/start-next/update", true},
		{"dev-1", "notify-next", JobsOpGet, JobsAccepted, "$aws/things/dev-1/jobs/notify-next/get/accepted", false},
	} {
		t.Run(tc.want, func(t *testing.T) {
			got := JobsTopic(tc.id, tc.job, tc.op, tc.suffix)
			if got != tc.want {
				t.Fatalf("JobsTopic = %q, want %q", got, tc.want)
			}
			p, err := ParseJobsTopic(got)
			if err != nil {
				t.Fatalf("ParseJobsTopic(%q): %v", got, err)
			}
			want := JobsTopicParts{DeviceID: tc.id, JobID: tc.job, Op: tc.op, Suffix: tc.suffix}
			if p != want {
				t.Fatalf("ParseJobsTopic = %+v, want %+v", p, want)
			}
			if p.IsRequest() != tc.request {
				t.Fatalf("IsRequest = %v, want %v", p.IsRequest(), tc.request)
			}
			if IsJobsServerTopic(got) == tc.request {
				t.Fatalf("IsJobsServerTopic = %v, want %v", !tc.request, !tc.request)
			}
		})
	}
}

func TestParseJobsTopicRejects(t *testing.T) {
	for _, topic := range []string{
		"outpost/v1/devices/d/telemetry",
		"$aws/things/d/shadow/update",
		"$aws/things/../jobs/notify-next",
		"$aws/things/d/jobs/",
		"$aws/things/d/jobs/notify-next/accepted",
		"$aws/things/d/jobs/job1",
		"$aws/things/d/jobs/job1/delete",
		"$aws/things/d/jobs/$next/update",
		"$aws/things/d/jobs/job.1/get",
		"$aws/things/d/jobs/job1/get/documents",
		"$aws/things/d/jobs/job1/get/accepted/x",
		"$aws/things/d/jobs/start-next/x",
		"$aws/things/d/jobs/" + strings.Repeat("j", MaxJobIDLen+1) + "/get",
	} {
		if p, err := ParseJobsTopic(topic); err == nil {
			t.Errorf("ParseJobsTopic(%q) = %+v, want an error", topic, p)
		}
		if IsJobsServerTopic(topic) {
			t.Errorf("IsJobsServerTopic(%q) = true", topic)
		}
	}
}

func TestJobTransitions(t *testing.T) {
	all := []JobStatus{JobQueued, JobInProgress, JobSucceeded, JobFailed, JobRejected, JobTimedOut, JobCanceled}
	allowed := map[[2]JobStatus]bool{}
	for _, from := range []JobStatus{JobQueued, JobInProgress} {
		for _, to := range []JobStatus{JobInProgress, JobSucceeded, JobFailed, JobRejected} {
			allowed[[2]JobStatus{from, to}] = true
		}
	}
	for _, from := range all {
		if !from.Valid() {
			t.Errorf("%s not Valid", from)
		}
		if got, want := from.Terminal(), from != JobQueued && from != JobInProgress; got != want {
			t.Errorf("%s.Terminal() = %v", from, got)
		}
		for _, to := range all {
			if got := DeviceMayTransition(from, to); got != allowed[[2]JobStatus{from, to}] {
				t.Errorf("DeviceMayTransition(%s, %s) = %v", from, to, got)
			}
			hub := !from.Terminal() && (to == JobCanceled || to == JobTimedOut)
			if got := HubMayTransition(from, to); got != hub {
				t.Errorf("HubMayTransition(%s, %s) = %v", from, to, got)
			}
		}
	}
	if JobStatus("DONE").Valid() {
		t.Error("DONE is Valid")
	}
}

func TestValidJobLimits(t *testing.T) {
	for _, id := range []string{"a", "ota-1_2", strings.Repeat("x", MaxJobIDLen)} {
		if err := ValidJobID(id); err != nil {
			t.Errorf("ValidJobID(%q): %v", id, err)
		}
	}
	for _, id := range []string{"", "$next", "a/b", "a.b", strings.Repeat("x", MaxJobIDLen+1)} {
		if err := ValidJobID(id); !errors.Is(err, CodeBadName) {
			t.Errorf("ValidJobID(%q) = %v, want bad_name", id, err)
		}
	}
	ok := map[string]string{"stage": "x", strings.Repeat("k", MaxJobStatusDetailKeyLen): strings.Repeat("v", MaxJobStatusDetailValueLen)}
	if err := ValidJobStatusDetails(ok); err != nil {
		t.Errorf("ValidJobStatusDetails: %v", err)
	}
	many := map[string]string{}
	for i := range MaxJobStatusDetails + 1 {
		many[string(rune('a'+i))] = "v"
	}
	for name, d := range map[string]map[string]string{
		"too many keys": many,
		"long key":      {strings.Repeat("k", MaxJobStatusDetailKeyLen+1): "v"},
		"empty key":     {"": "v"},
		"long value":    {"k": strings.Repeat("v", MaxJobStatusDetailValueLen+1)},
		"bad utf8":      {"k": "\xff"},
	} {
		if err := ValidJobStatusDetails(d); err == nil {
			t.Errorf("%s: ValidJobStatusDetails accepted it", name)
		}
	}
	if err := ValidJobDocument([]byte(`{"type":"file"}`)); err != nil {
		t.Errorf("ValidJobDocument: %v", err)
	}
	for _, doc := range []string{``, `[]`, `null`, `"x"`, `{`, `{"a":"` + strings.Repeat("x", MaxJobDocumentBytes) + `"}`} {
		if err := ValidJobDocument([]byte(doc)); err == nil {
			t.Errorf("ValidJobDocument(%.20q) accepted it", doc)
		}
	}
	if got := JobDocumentType([]byte(`{"type":"file","url":"x"}`)); got != "file" {
		t.Errorf("JobDocumentType = %q", got)
	}
	if got := JobDocumentType([]byte(`{"type":3}`)); got != "" {
		t.Errorf("JobDocumentType of a number type = %q", got)
	}
}
