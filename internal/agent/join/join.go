package join

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/outpost-edge/outpost/internal/agent/config"
)

// maxResponseBytes bounds what Join reads from the hub.
const maxResponseBytes = 1 << 20

// Path is the hub endpoint Join posts to, relative to the hub URL.
const Path = "/api/v1/join"

// response is the body of a successful join.
type response struct {
	DeviceID     string `json:"device_id"`
	HubURL       string `json:"hub_url"`
	MQTTURL      string `json:"mqtt_url"`
	MQTTUsername string `json:"mqtt_username"`
	MQTTPassword string `json:"mqtt_password"`
	// TUFRoot is the hub's signed TUF root metadata; absent when the
	// hub's update keys are not initialised yet.
	TUFRoot json.RawMessage `json:"tuf_root,omitempty"`
}

// Result is what a join returns: the agent's configuration and, when the
// hub has update keys, the root of trust for signed updates.
type Result struct {
	Config config.Config
	// TUFRoot is the hub's signed root.json, to be stored as the agent's
	// trusted root for updates; nil when the hub had no keys yet.
	TUFRoot []byte
}

// errorBody is the hub's error envelope.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// Join presents token to the hub at hubURL and returns config.Default()
// completed with the device id, hub URL and MQTT credentials the hub issued,
// and the hub's TUF root when it has one.
// client nil means http.DefaultClient; set its Timeout or use ctx to bound
// the call. A refusal by the hub is a *RefusedError.
func Join(ctx context.Context, hubURL, token string, client *http.Client) (Result, error) {
	u, err := url.Parse(hubURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Result{}, fmt.Errorf("joining: hub URL %q must be http://host[:port] or https://host[:port]", hubURL)
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return Result{}, errors.New("joining: the join token is empty")
	}
	if client == nil {
		client = http.DefaultClient
	}
	endpoint := strings.TrimSuffix(u.String(), "/") + Path
	body, _ := json.Marshal(map[string]string{"token": token})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return Result{}, fmt.Errorf("joining: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return Result{}, fmt.Errorf("joining: contacting the hub: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return Result{}, fmt.Errorf("joining: reading the hub's answer: %w", err)
	}
	if len(raw) > maxResponseBytes {
		return Result{}, fmt.Errorf("joining: the hub's answer is larger than %d bytes", maxResponseBytes)
	}
	if resp.StatusCode != http.StatusOK {
		return Result{}, refused(resp, raw)
	}

	var r response
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&r); err != nil {
		return Result{}, fmt.Errorf("joining: the hub's answer is not a join response: %w", err)
	}
	c := config.Default()
	c.DeviceID = r.DeviceID
	c.HubURL = r.HubURL
	if c.HubURL == "" {
		c.HubURL = strings.TrimSuffix(u.String(), "/")
	}
	c.MQTT.URL = r.MQTTURL
	c.MQTT.Username = r.MQTTUsername
	c.MQTT.Password = r.MQTTPassword
	if err := c.Validate(); err != nil {
		return Result{}, fmt.Errorf("joining: the hub returned an unusable configuration:\n%w", err)
	}
	res := Result{Config: c}
	if len(r.TUFRoot) > 0 && !bytes.Equal(bytes.TrimSpace(r.TUFRoot), []byte("null")) {
		res.TUFRoot = []byte(r.TUFRoot)
	}
	return res, nil
}

func refused(resp *http.Response, raw []byte) error {
	e := &RefusedError{Status: resp.StatusCode}
	var eb errorBody
	if json.Unmarshal(raw, &eb) == nil && eb.Error.Message != "" {
		e.Code, e.Message = eb.Error.Code, eb.Error.Message
		return e
	}
	// Not the hub's API (a proxy, a wrong URL): say what came back.
	e.Message = fmt.Sprintf("%s answered %s", resp.Request.URL.Redacted(), resp.Status)
	if snippet := strings.TrimSpace(string(raw)); snippet != "" && len(snippet) <= 200 && !bytes.ContainsAny(raw, "<") {
		e.Message += ": " + snippet
	}
	if resp.StatusCode == http.StatusNotFound {
		e.Message += " (is the URL the hub's HTTP address?)"
	}
	return e
}
