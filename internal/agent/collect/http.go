package collect

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/protocol"
)

// MaxHTTPBodyBytes is the largest response body an HTTP source reads.
const MaxHTTPBodyBytes = 1 << 20

// HTTP is a source that GETs a JSON document on every read and picks
// values from it by JSON pointer (RFC 6901), each the point
// "<source name>/<field>". A status other than 2xx, a body over
// MaxHTTPBodyBytes or a body that is not JSON fails the read; a field that
// is missing, or not a number, string or boolean, fails that field only.
type HTTP struct {
	url     string
	headers http.Header
	fields  []httpField
	// transport is the source's own, so that Close can drop its idle
	// connections.
	transport *http.Transport
	client    *http.Client
}

// httpField is one value an HTTP source picks.
type httpField struct {
	sensor, pointer string
}

var _ Source = (*HTTP)(nil)

// NewHTTP returns an HTTP source named name that GETs rawURL with headers
// and picks fields, a map of field name to JSON pointer.
func NewHTTP(name, rawURL string, headers, fields map[string]string) (*HTTP, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("http: %q is not an http:// or https:// URL", rawURL)
	}
	if len(fields) == 0 {
		return nil, errors.New("http: no fields")
	}
	h := http.Header{"Accept": {"application/json"}}
	for k, v := range headers {
		h.Set(k, v)
	}
	var fs []httpField
	for f, ptr := range fields {
		sensor := name + "/" + f
		if err := protocol.ValidSensorName(sensor); err != nil {
			return nil, fmt.Errorf("http: field %q: %w", f, err)
		}
		if ptr != "" && !strings.HasPrefix(ptr, "/") {
			return nil, fmt.Errorf("http: field %q: %q is not a JSON pointer", f, ptr)
		}
		fs = append(fs, httpField{sensor: sensor, pointer: ptr})
	}
	slices.SortFunc(fs, func(a, b httpField) int { return strings.Compare(a.sensor, b.sensor) })
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 1, 1
	return &HTTP{url: rawURL, headers: h, fields: fs, transport: tr, client: &http.Client{Transport: tr}}, nil
}

// Collect GETs the document and picks the fields.
func (s *HTTP) Collect(ctx context.Context, _ time.Time) ([]*outpostv1.Point, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, fmt.Errorf("polling %s: %w", s.url, err)
	}
	req.Header = s.headers.Clone()
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("polling: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxHTTPBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("polling %s: reading the body: %w", s.url, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("polling %s: status %s", s.url, resp.Status)
	}
	if len(body) > MaxHTTPBodyBytes {
		return nil, fmt.Errorf("polling %s: body larger than %d bytes", s.url, MaxHTTPBodyBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("polling %s: body is not JSON: %w", s.url, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("polling %s: body is not JSON: data after the document", s.url)
	}
	var points []*outpostv1.Point
	var errs []error
	for _, f := range s.fields {
		v, err := jsonPointer(doc, f.pointer)
		if err == nil {
			var p *outpostv1.Point
			if p, err = jsonPoint(f.sensor, v); err == nil {
				points = append(points, p)
				continue
			}
		}
		errs = append(errs, fmt.Errorf("field %s (%q): %w", f.sensor, f.pointer, err))
	}
	if len(errs) > 0 {
		return points, fmt.Errorf("polling %s: %w", s.url, errors.Join(errs...))
	}
	return points, nil
}

// Close drops the source's idle connections.
func (s *HTTP) Close() error {
	s.transport.CloseIdleConnections()
	return nil
}

// jsonPointer returns the value ptr (RFC 6901) points to in doc, a value
// decoded by encoding/json.
func jsonPointer(doc any, ptr string) (any, error) {
	if ptr == "" {
		return doc, nil
	}
	if !strings.HasPrefix(ptr, "/") {
		return nil, fmt.Errorf("%q is not a JSON pointer", ptr)
	}
	cur := doc
	for i, tok := range strings.Split(ptr[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[tok]
			if !ok {
				return nil, fmt.Errorf("no member %q at token %d", tok, i+1)
			}
			cur = v
		case []any:
			n, err := strconv.Atoi(tok)
			if err != nil || n < 0 || (len(tok) > 1 && tok[0] == '0') || tok[0] == '+' {
				return nil, fmt.Errorf("token %d: %q is not an array index", i+1, tok)
			}
			if n >= len(c) {
				return nil, fmt.Errorf("token %d: index %d beyond the array's %d elements", i+1, n, len(c))
			}
			cur = c[n]
		default:
			return nil, fmt.Errorf("token %d: %q steps into a JSON %s", i+1, tok, jsonKind(cur))
		}
	}
	return cur, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	default:
		return "number"
	}
}
