package rollout

import (
	"encoding/json"
	"fmt"
	"math/big"
	"sort"
	"strings"
)

// leaf is one value the rollout sets: its dotted path and value.
type leaf struct {
	path  []string
	value any
}

// leaves lists the values of a desired fragment that a device must report,
// sorted by path. Arrays are leaves. null (a delete) and empty objects ask
// nothing of the device: the hub's delta never holds them either.
func leaves(prefix []string, m map[string]any, out []leaf) []leaf {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p := append(prefix[:len(prefix):len(prefix)], k)
		switch v := m[k].(type) {
		case nil:
		case map[string]any:
			out = leaves(p, v, out)
		default:
			out = append(out, leaf{path: p, value: v})
		}
	}
	return out
}

// pending returns why reported does not yet contain the leaves, or "" when
// it does: reported then holds every leaf with an equal value (numbers by
// value, as the hub's delta compares them).
func pending(want []leaf, reported map[string]any) string {
	var first string
	n := 0
	for _, l := range want {
		got, ok := lookup(reported, l.path)
		if ok && equalJSON(got, l.value) {
			continue
		}
		n++
		if first != "" {
			continue
		}
		key := strings.Join(l.path, ".")
		if ok {
			first = fmt.Sprintf("%s: reported %s, want %s", key, compact(got), compact(l.value))
		} else {
			first = fmt.Sprintf("%s: not reported, want %s", key, compact(l.value))
		}
	}
	switch {
	case n == 2:
		first += ", and 1 other key"
	case n > 2:
		first += fmt.Sprintf(", and %d other keys", n-1)
	}
	return first
}

func lookup(m map[string]any, path []string) (any, bool) {
	var v any = m
	for _, p := range path {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = obj[p]; !ok {
			return nil, false
		}
	}
	return v, true
}

// equalJSON compares decoded JSON values; numbers compare by value, so 1
// equals 1.0 whether decoded as float64 or json.Number.
func equalJSON(a, b any) bool {
	if isNumber, equal := numbersEqual(a, b); isNumber {
		return equal
	}
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, va := range a {
			vb, ok := b[k]
			if !ok || !equalJSON(va, vb) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !equalJSON(a[i], b[i]) {
				return false
			}
		}
		return true
	case string:
		b, ok := b.(string)
		return ok && a == b
	case bool:
		b, ok := b.(bool)
		return ok && a == b
	case nil:
		return b == nil
	}
	return false
}

// numbersEqual reports whether a and b are both JSON numbers and, if so,
// whether they are equal. Two json.Numbers compare exactly; otherwise both
// are compared as float64, as a decoder without UseNumber would see them.
func numbersEqual(a, b any) (isNumber, equal bool) {
	na, aIsNum := a.(json.Number)
	nb, bIsNum := b.(json.Number)
	if aIsNum && bIsNum {
		ra, okA := new(big.Rat).SetString(na.String())
		rb, okB := new(big.Rat).SetString(nb.String())
		return true, okA && okB && ra.Cmp(rb) == 0
	}
	fa, okA := float(a)
	fb, okB := float(b)
	if !okA {
		return false, false
	}
	return true, okB && fa == fb
}

func float(v any) (float64, bool) {
	switch n := v.(type) {
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	}
	return 0, false
}

func compact(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
