package localapi

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
	"strings"
	"time"

	"github.com/outpost-edge/outpost/protocol"
)

// maxServicesBytes bounds the hub's answer to a service lookup.
const maxServicesBytes = 1 << 20

// Instance is one registered instance of a service, as the hub returns it.
type Instance = protocol.ServiceInstance

// ServicesAnswer is the body of GET /v1/services/{name}: the hub's answer
// and where it came from.
type ServicesAnswer struct {
	protocol.ServiceLookup
	// Cached is true when the hub could not be asked and this is the last
	// answer it gave.
	Cached bool `json:"cached"`
	// FetchedAt is when the hub gave this answer; for a cached one, when
	// it was stored (see cacheRefresh).
	FetchedAt time.Time `json:"fetched_at"`
}

// services answers the hub's instances of a service, or the cached
// answer when the hub cannot be asked.
func (a *API) services(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	tags := r.URL.Query()["tag"]
	var problems []error
	if err := protocol.CheckServiceWord("service name", name); err != nil {
		problems = append(problems, err)
	}
	for _, t := range tags {
		if err := protocol.CheckServiceWord("tag", t); err != nil {
			problems = append(problems, err)
		}
	}
	if err := errors.Join(problems...); err != nil {
		writeError(w, http.StatusBadRequest, strings.ReplaceAll(err.Error(), "\n", "; "))
		return
	}
	slices.Sort(tags)
	tags = slices.Compact(tags)
	cacheKey := name
	if len(tags) > 0 {
		cacheKey += "?" + strings.Join(tags, ",")
	}

	ans, err := a.fetchServices(r.Context(), name, tags)
	if err == nil {
		if err := a.cacheServices(cacheKey, ans); err != nil {
			a.log.Warn("caching a service lookup failed", "service", name, "err", err)
		}
		writeJSON(w, http.StatusOK, ans)
		return
	}
	cached, cerr := a.cachedServices(cacheKey)
	if cerr != nil {
		a.log.Warn("asking the hub for a service failed and there is no cached answer", "service", name, "err", err, "cache_err", cerr)
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("asking the hub for service %s: %v; %v", name, err, cerr))
		return
	}
	a.log.Debug("asking the hub for a service failed; answering from the cache", "service", name, "err", err)
	writeJSON(w, http.StatusOK, cached)
}

// cacheRefresh is how old a cached answer may grow before an identical
// fresh one replaces it: apps that poll a lookup do not cost a write (an
// fsync, flash wear) each time.
const cacheRefresh = 5 * time.Minute

// cacheServices stores ans as the cached answer at key, unless the cache
// holds the same instances from less than cacheRefresh ago.
func (a *API) cacheServices(key string, ans ServicesAnswer) error {
	if old, err := a.cachedServices(key); err == nil && ans.FetchedAt.Sub(old.FetchedAt) < cacheRefresh {
		oldInst, _ := json.Marshal(old.Instances)
		newInst, _ := json.Marshal(ans.Instances)
		if bytes.Equal(oldInst, newInst) {
			return nil
		}
	}
	raw, err := json.Marshal(ans)
	if err != nil {
		return err
	}
	return a.store.cachePut(key, raw)
}

func (a *API) cachedServices(key string) (ServicesAnswer, error) {
	raw, err := a.store.cacheGet(key)
	if err != nil {
		return ServicesAnswer{}, err
	}
	if raw == nil {
		return ServicesAnswer{}, ErrNoCache
	}
	var ans ServicesAnswer
	if err := json.Unmarshal(raw, &ans); err != nil {
		return ServicesAnswer{}, fmt.Errorf("reading the cached answer: %w", err)
	}
	ans.Cached = true
	return ans, nil
}

// fetchServices asks the hub, with the device's credentials.
func (a *API) fetchServices(ctx context.Context, name string, tags []string) (ServicesAnswer, error) {
	if a.opts.HubURL == "" {
		return ServicesAnswer{}, errors.New("no hub_url configured")
	}
	u := strings.TrimSuffix(a.opts.HubURL, "/") + protocol.DeviceServicesPath + url.PathEscape(name)
	if len(tags) > 0 {
		u += "?" + url.Values{"tag": tags}.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return ServicesAnswer{}, err
	}
	req.SetBasicAuth(a.opts.DeviceID, a.opts.Password)
	resp, err := a.opts.Client.Do(req)
	if err != nil {
		return ServicesAnswer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxServicesBytes+1))
	if err != nil {
		return ServicesAnswer{}, fmt.Errorf("reading the hub's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return ServicesAnswer{}, fmt.Errorf("the hub answered %s", resp.Status)
	}
	if len(body) > maxServicesBytes {
		return ServicesAnswer{}, fmt.Errorf("the hub's answer is larger than %d bytes", maxServicesBytes)
	}
	var ans ServicesAnswer
	if err := json.Unmarshal(body, &ans); err != nil {
		return ServicesAnswer{}, fmt.Errorf("decoding the hub's answer: %w", err)
	}
	if ans.Instances == nil {
		ans.Instances = []Instance{}
	}
	ans.Service, ans.Cached, ans.FetchedAt = name, false, a.opts.Now().UTC()
	return ans, nil
}
