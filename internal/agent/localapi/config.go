package localapi

import (
	"net/http"
	"strings"
)

// AppKey is the key of the desired state that belongs to the apps.
const AppKey = "app"

// config answers the shadow's desired.app, or with {key...} the value at
// that path in it (a/b is desired.app.a.b).
func (a *API) config(w http.ResponseWriter, r *http.Request) {
	desired, err := a.opts.Desired()
	if err != nil {
		a.log.Error("reading the desired state failed", "err", err)
		writeError(w, http.StatusInternalServerError, "reading the shadow's desired state: "+err.Error())
		return
	}
	var v any = map[string]any{}
	if app, ok := desired[AppKey]; ok && app != nil {
		v = app
	}
	key := r.PathValue("key")
	if key == "" {
		writeJSON(w, http.StatusOK, v)
		return
	}
	for part := range strings.SplitSeq(key, "/") {
		obj, ok := v.(map[string]any)
		if !ok {
			writeError(w, http.StatusNotFound, "no config key "+key)
			return
		}
		if v, ok = obj[part]; !ok {
			writeError(w, http.StatusNotFound, "no config key "+key)
			return
		}
	}
	writeJSON(w, http.StatusOK, v)
}
