package localapi

import (
	"fmt"
	"net/http"
)

func (a *API) stateKey(w http.ResponseWriter, r *http.Request) (string, bool) {
	key := r.PathValue("key")
	if err := ValidKey(key); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return "", false
	}
	return key, true
}

func (a *API) storeFailed(w http.ResponseWriter, op string, err error) {
	a.log.Error("the state store failed", "op", op, "err", err)
	writeError(w, http.StatusInternalServerError, fmt.Sprintf("%s: %v", op, err))
}

func (a *API) stateGet(w http.ResponseWriter, r *http.Request) {
	key, ok := a.stateKey(w, r)
	if !ok {
		return
	}
	v, ct, ok, err := a.store.Get(key)
	if err != nil {
		a.storeFailed(w, "reading state", err)
		return
	}
	if !ok {
		writeError(w, http.StatusNotFound, "no state at key "+key)
		return
	}
	if ct == "" {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(v)
}

func (a *API) statePut(w http.ResponseWriter, r *http.Request) {
	key, ok := a.stateKey(w, r)
	if !ok {
		return
	}
	body, ok := readBody(w, r, MaxValueBytes, "value")
	if !ok {
		return
	}
	ct := r.Header.Get("Content-Type")
	if len(ct) > maxContentTypeLen {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("Content-Type longer than %d bytes", maxContentTypeLen))
		return
	}
	if err := a.store.Put(key, ct, body); err != nil {
		a.storeFailed(w, "storing state", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) stateDelete(w http.ResponseWriter, r *http.Request) {
	key, ok := a.stateKey(w, r)
	if !ok {
		return
	}
	if err := a.store.Delete(key); err != nil {
		a.storeFailed(w, "deleting state", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// stateList answers {"keys":[…]}, the keys starting with ?prefix.
func (a *API) stateList(w http.ResponseWriter, r *http.Request) {
	prefix := r.URL.Query().Get("prefix")
	if len(prefix) > MaxKeyLen {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("prefix longer than %d bytes", MaxKeyLen))
		return
	}
	keys, err := a.store.List(prefix)
	if err != nil {
		a.storeFailed(w, "listing state", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": keys})
}
