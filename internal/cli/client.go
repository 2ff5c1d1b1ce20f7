package cli

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
	"time"
	"unicode/utf8"
)

const (
	// clientTimeout bounds a whole request, body included.
	clientTimeout = 30 * time.Second
	// maxResponseBody bounds a successful response body; the largest
	// documented one (10,000 telemetry points) is far below it.
	maxResponseBody = 64 << 20
	// maxErrorBody bounds how much of an error body is read.
	maxErrorBody = 64 << 10
)

// client is a small client of the hub's REST API (docs/api.md).
type client struct {
	base  string // normalized hub URL without trailing slash
	token string // bearer token; empty for unauthenticated calls
	http  *http.Client
}

func newClient(base, token string) *client {
	return &client{base: base, token: token, http: &http.Client{Timeout: clientTimeout}}
}

// apiError is an error response of the hub: a non-2xx status with the
// documented {"error": {"code", "message"}} body.
type apiError struct {
	Status  int
	Code    string // stable code such as "not_found"; empty if the body had none
	Message string
}

func (e *apiError) Error() string {
	var msg string
	if e.Code != "" {
		msg = fmt.Sprintf("hub refused: %s (%s)", e.Message, e.Code)
	} else {
		msg = fmt.Sprintf("hub refused: HTTP %d %s", e.Status, http.StatusText(e.Status))
		if e.Message != "" {
			msg += ": " + e.Message
		}
	}
	if e.Status == http.StatusUnauthorized {
		msg += `; run "outpost login"`
	}
	return msg
}

// do sends a request to path (below the hub URL) with query and the JSON
// encoding of in (if not nil) and returns the raw body of a 2xx response.
// Error responses become *apiError, transport failures "cannot reach hub".
func (c *client) do(ctx context.Context, method, path string, query url.Values, in any) ([]byte, error) {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("encoding request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "outpost/"+Version)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("%s %s: %w", method, path, ctxErr)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("cannot reach hub at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, decodeError(resp)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody+1))
	if err != nil {
		return nil, fmt.Errorf("reading response from hub at %s: %w", c.base, err)
	}
	if len(data) > maxResponseBody {
		return nil, fmt.Errorf("reading response from hub at %s: body larger than %d bytes", c.base, maxResponseBody)
	}
	return data, nil
}

// doJSON is do followed by decoding the body into out (if not nil). It
// returns the raw body too, for -o json.
func (c *client) doJSON(ctx context.Context, method, path string, query url.Values, in, out any) ([]byte, error) {
	data, err := c.do(ctx, method, path, query, in)
	if err != nil {
		return nil, err
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return nil, fmt.Errorf("decoding response of %s %s: %w", method, path, err)
		}
	}
	return data, nil
}

// decodeError turns a non-2xx response into an *apiError, keeping a short,
// single-line excerpt of bodies that are not the documented error shape.
func decodeError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &apiError{Status: resp.StatusCode}
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(data, &body) == nil && body.Error.Code != "" {
		e.Code = body.Error.Code
		e.Message = oneLine(body.Error.Message, 500)
		if e.Message == "" {
			e.Message = http.StatusText(resp.StatusCode)
		}
		return e
	}
	e.Message = oneLine(string(data), 200)
	return e
}

// oneLine collapses whitespace and control characters of s into single
// spaces and cuts it to at most max bytes, so a message fits one line.
func oneLine(s string, max int) string {
	s = sanitize(strings.Join(strings.Fields(s), " "))
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// Paths of the REST API.
const (
	pathLogin   = "/api/v1/auth/login"
	pathDevices = "/api/v1/devices"
)

// devicePath returns /api/v1/devices/{id} followed by the given suffix.
func devicePath(id, suffix string) string {
	return pathDevices + "/" + url.PathEscape(id) + suffix
}
