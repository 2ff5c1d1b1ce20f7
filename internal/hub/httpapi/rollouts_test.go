package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
)

func TestRolloutsAPI(t *testing.T) {
	h := hubtest.Start(t)
	initKeys(t, h)
	if code, body := publish(t, h, "model", "1.0.0", "file", "any", []byte("weights")); code != http.StatusCreated {
		t.Fatalf("publish: %d %s", code, body)
	}
	var errBody struct {
		Error struct{ Code, Message string }
	}
	// Refusals, each with its code.
	for _, tc := range []struct {
		body       map[string]any
		status     int
		code, want string
	}{
		{map[string]any{"artifact": "model"}, 400, "bad_request", "NAME@VERSION"},
		{map[string]any{"artifact": "model@1.0.0", "success_threshold": "150%"}, 400, "bad_request", "success threshold"},
		{map[string]any{"artifact": "model@1.0.0", "soak": "soon"}, 400, "bad_request", "soak"},
		{map[string]any{"artifact": "model@1.0.0", "waves": []string{"0%"}}, 400, "bad_request", "waves"},
		{map[string]any{"artifact": "model@9.9.9"}, 400, "unknown_artifact", "publish it first"},
		{map[string]any{"artifact": "model@1.0.0"}, 400, "no_devices", "no device matches"},
		{map[string]any{"artifact": "model@1.0.0", "extra": 1}, 400, "bad_request", "extra"},
	} {
		h.API(t, "POST", "/api/v1/rollouts", tc.body, tc.status, &errBody)
		if errBody.Error.Code != tc.code || !strings.Contains(errBody.Error.Message, tc.want) {
			t.Errorf("%v: %s %q; want %s containing %q", tc.body, errBody.Error.Code, errBody.Error.Message, tc.code, tc.want)
		}
	}

	for _, id := range []string{"cam-1", "cam-2", "cam-3"} {
		h.AddDevice(t, id)
	}
	var r struct {
		ID         string
		Status     string
		Devices    int
		Wave       int
		WaveBounds []int `json:"wave_bounds"`
		WaveStates []struct {
			JobID      string `json:"job_id"`
			Started    bool
			Executions []struct{ Device, Status string }
		} `json:"wave_states"`
	}
	h.API(t, "POST", "/api/v1/rollouts", map[string]any{"artifact": "model@1.0.0", "waves": []string{"1", "100%"}, "success_threshold": "90%"}, http.StatusCreated, &r)
	if !strings.HasPrefix(r.ID, "model-1_0_0-") || r.Status != "running" || r.Devices != 3 || r.Wave != 1 || len(r.WaveBounds) != 2 {
		t.Fatalf("created %+v", r)
	}
	if w := r.WaveStates[0]; !w.Started || w.JobID != r.ID+"-w1" || len(w.Executions) != 1 || w.Executions[0].Status != "QUEUED" {
		t.Errorf("wave 1: %+v; want its job created with one queued device", w)
	}
	if r.WaveStates[1].Started {
		t.Error("wave 2 started before wave 1 ended")
	}
	h.API(t, "POST", "/api/v1/rollouts", map[string]any{"artifact": "model@1.0.0", "id": r.ID}, http.StatusConflict, &errBody)

	var list struct{ Rollouts []struct{ ID, Status string } }
	h.API(t, "GET", "/api/v1/rollouts", nil, http.StatusOK, &list)
	if len(list.Rollouts) != 1 || list.Rollouts[0].ID != r.ID {
		t.Errorf("list %+v", list)
	}
	h.API(t, "POST", "/api/v1/rollouts/"+r.ID+"/resume", nil, http.StatusConflict, &errBody)
	h.API(t, "POST", "/api/v1/rollouts/"+r.ID+"/pause", map[string]string{"reason": "checking"}, http.StatusOK, &r)
	if r.Status != "paused" {
		t.Errorf("after pause: %s", r.Status)
	}
	h.API(t, "POST", "/api/v1/rollouts/"+r.ID+"/abort", nil, http.StatusOK, &r)
	if r.Status != "aborted" || r.WaveStates[0].Executions[0].Status != "CANCELED" {
		t.Errorf("after abort: %+v; want aborted with the queued job canceled", r)
	}
	h.API(t, "POST", "/api/v1/rollouts/"+r.ID+"/resume", nil, http.StatusConflict, &errBody)
	if errBody.Error.Code != "rollout_ended" {
		t.Errorf("resume after abort: %+v", errBody)
	}
	h.API(t, "GET", "/api/v1/rollouts/nope", nil, http.StatusNotFound, &errBody)
}
