package deployspec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxBytes is the largest spec Parse reads (64 KiB).
const MaxBytes = 64 << 10

// Parse reads a spec in YAML or JSON (JSON is read as YAML), applies the
// defaults to the keys it leaves out and validates it. Unknown and repeated
// keys are errors. On failure it returns an error wrapping ErrTooLarge for
// input over MaxBytes, else Problems listing every problem found, each
// naming its key. A key set to null counts as left out.
func Parse(data []byte) (Spec, error) {
	if len(data) > MaxBytes {
		return Spec{}, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(data), MaxBytes)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return Spec{}, Problems{{Message: "empty spec"}}
		}
		return Spec{}, Problems{{Message: "not valid YAML or JSON: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return Spec{}, Problems{{Message: "more than one YAML document; write one spec per file"}}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if isNull(resolve(root)) {
		return Spec{}, Problems{{Message: "empty spec"}}
	}

	s := Default()
	d := &decoder{}
	d.spec(resolve(root), &s)
	probs := d.probs
	if err := s.Validate(); err != nil {
		// A key that could not be read keeps its default; do not report it
		// a second time.
		for _, p := range err.(Problems) {
			if !d.failed(p.Path) {
				probs = append(probs, p)
			}
		}
	}
	if len(probs) > 0 {
		return Spec{}, probs
	}
	return s, nil
}

// decoder reads a YAML node tree into a Spec, collecting every problem
// instead of stopping at the first.
type decoder struct {
	probs Problems
	bad   []string // paths of the keys that could not be read
}

func (d *decoder) add(path, format string, args ...any) {
	d.probs = append(d.probs, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
	d.bad = append(d.bad, path)
}

// failed reports whether path, or a key it is inside of, could not be read.
func (d *decoder) failed(path string) bool {
	for _, b := range d.bad {
		if path == b || strings.HasPrefix(path, b+".") || strings.HasPrefix(path, b+"[") {
			return true
		}
	}
	return false
}

func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// describe names what n is, for "want X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	}
	return "something else"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

type fields map[string]func(n *yaml.Node, path string)

// entries calls fn for every entry of the mapping n (want names what a
// mapping of this kind holds), reporting a node that is not a mapping,
// keys that are not strings and repeated keys.
func (d *decoder) entries(n *yaml.Node, path, want string, fn func(key string, v *yaml.Node, p string)) {
	if n.Kind != yaml.MappingNode {
		d.add(path, "want a mapping of %s, got %s", want, describe(n))
		return
	}
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			d.add(path, "keys must be strings, got %s", describe(k))
			continue
		}
		p := join(path, k.Value)
		if seen[k.Value] {
			d.add(p, "key given more than once")
			continue
		}
		seen[k.Value] = true
		fn(k.Value, v, p)
	}
}

// mapping calls fs[key] for every key of the mapping n, reporting unknown
// and repeated keys. Null values are skipped: the field keeps its default.
func (d *decoder) mapping(n *yaml.Node, path string, fs fields) {
	d.entries(n, path, "keys", func(key string, v *yaml.Node, p string) {
		f, ok := fs[key]
		if !ok {
			known := make([]string, 0, len(fs))
			for name := range fs {
				known = append(known, name)
			}
			slices.Sort(known)
			d.add(p, "unknown key; known keys here: %s", strings.Join(known, ", "))
			return
		}
		if !isNull(v) {
			f(v, p)
		}
	})
}

// scalar passes the text of the scalar n to apply, reporting its error.
func (d *decoder) scalar(n *yaml.Node, path string, apply func(string) error) {
	if n.Kind != yaml.ScalarNode {
		d.add(path, "want a single value, got %s", describe(n))
		return
	}
	if err := apply(n.Value); err != nil {
		d.add(path, "%s", err)
	}
}

func (d *decoder) str(dst *string) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		d.scalar(n, path, func(s string) error { *dst = s; return nil })
	}
}

func (d *decoder) integer(dst *int) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		d.scalar(n, path, func(s string) error {
			var v int
			if n.Tag != "!!int" || n.Decode(&v) != nil {
				return fmt.Errorf("want a whole number, got %q", s)
			}
			*dst = v
			return nil
		})
	}
}

func (d *decoder) duration(dst *Duration) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		d.scalar(n, path, func(s string) error {
			return set(dst, ParseDuration, s)
		})
	}
}

// list calls item for each element of the sequence n.
func (d *decoder) list(n *yaml.Node, path string, item func(n *yaml.Node, path string)) {
	if n.Kind != yaml.SequenceNode {
		d.add(path, "want a list, got %s", describe(n))
		return
	}
	for i, e := range n.Content {
		item(resolve(e), fmt.Sprintf("%s[%d]", path, i))
	}
}

func (d *decoder) strings(dst *[]string) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		out := []string{}
		d.list(n, path, func(e *yaml.Node, p string) {
			var s string
			d.str(&s)(e, p)
			out = append(out, s)
		})
		*dst = out
	}
}

func (d *decoder) ints(dst *[]int) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		out := []int{}
		d.list(n, path, func(e *yaml.Node, p string) {
			var v int
			d.integer(&v)(e, p)
			out = append(out, v)
		})
		*dst = out
	}
}

// stringMap reads a mapping of strings to strings; scalar values of any
// type are taken as written (PORT: 8081 is "8081").
func (d *decoder) stringMap(dst *map[string]string) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		out := make(map[string]string, len(n.Content)/2)
		d.entries(n, path, "keys to values", func(key string, v *yaml.Node, p string) {
			var val string
			if !isNull(v) {
				d.str(&val)(v, p)
			}
			out[key] = val
		})
		if n.Kind == yaml.MappingNode {
			*dst = out
		}
	}
}

func (d *decoder) spec(n *yaml.Node, s *Spec) {
	d.mapping(n, "", fields{
		"name":     d.str(&s.Name),
		"artifact": d.str(&s.Artifact),
		"args":     d.strings(&s.Args),
		"env":      d.stringMap(&s.Env),
		"ports":    d.ints(&s.Ports),
		"user":     d.str(&s.User),
		"resources": func(n *yaml.Node, p string) {
			r := &s.Resources
			d.mapping(n, p, fields{
				"cpu": func(n *yaml.Node, p string) {
					d.scalar(n, p, func(v string) error { return set(&r.CPU, ParseCPU, v) })
				},
				"memory": func(n *yaml.Node, p string) {
					d.scalar(n, p, func(v string) error { return set(&r.Memory, ParseMemory, v) })
				},
			})
		},
		"health": func(n *yaml.Node, p string) {
			h := DefaultHealth()
			d.health(n, p, &h)
			s.Health = &h
		},
		"restart": func(n *yaml.Node, p string) {
			r := &s.Restart
			d.mapping(n, p, fields{
				"policy":      d.str(&r.Policy),
				"backoff_min": d.duration(&r.BackoffMin),
				"backoff_max": d.duration(&r.BackoffMax),
			})
		},
		"selector": d.stringMap(&s.Selector),
		"strategy": func(n *yaml.Node, p string) {
			st := &s.Strategy
			d.mapping(n, p, fields{
				"type": d.str(&st.Type),
				"batch": func(n *yaml.Node, p string) {
					d.scalar(n, p, func(v string) error { return set(&st.Batch, ParseBatch, v) })
				},
				"max_unavailable": d.integer(&st.MaxUnavailable),
				"pause":           d.duration(&st.Pause),
				"health_timeout":  d.duration(&st.HealthTimeout),
			})
		},
	})
}

func (d *decoder) health(n *yaml.Node, path string, h *Health) {
	d.mapping(n, path, fields{
		"http": func(n *yaml.Node, p string) {
			c := &HTTPCheck{Path: DefaultHTTPPath}
			d.mapping(n, p, fields{"port": d.integer(&c.Port), "path": d.str(&c.Path)})
			h.HTTP = c
		},
		"tcp": func(n *yaml.Node, p string) {
			c := &TCPCheck{}
			d.mapping(n, p, fields{"port": d.integer(&c.Port)})
			h.TCP = c
		},
		"exec": func(n *yaml.Node, p string) {
			c := &ExecCheck{}
			d.mapping(n, p, fields{"command": d.strings(&c.Command)})
			h.Exec = c
		},
		"interval":          d.duration(&h.Interval),
		"timeout":           d.duration(&h.Timeout),
		"failure_threshold": d.integer(&h.FailureThreshold),
	})
}

// set stores parse(s) in dst when it parses, leaving dst alone otherwise.
func set[T any](dst *T, parse func(string) (T, error), s string) error {
	v, err := parse(s)
	if err != nil {
		return err
	}
	*dst = v
	return nil
}
