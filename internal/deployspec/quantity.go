package deployspec

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// maxQuantityLen bounds the text of a quantity, and maxExponent its decimal
// exponent, so that parsing never builds huge numbers.
const (
	maxQuantityLen = 32
	maxExponent    = 30
)

// CPU is a CPU limit in millicores (1000 = one core), written in
// Kubernetes notation: "200m", "0.5", "1", "2.5". Zero means no limit.
type CPU int64

// Memory is a memory limit in bytes, written in Kubernetes notation:
// "64Mi", "1.5Gi", "500M", "128974848", "129e6". Zero means no limit.
type Memory int64

// The multipliers of memory suffixes. Suffixes are case-sensitive, as in
// Kubernetes: "Mi" and "M", never "mi", "MB" or "K".
var memorySuffixes = map[string]int64{
	"":   1,
	"k":  1e3,
	"M":  1e6,
	"G":  1e9,
	"T":  1e12,
	"P":  1e15,
	"E":  1e18,
	"Ki": 1 << 10,
	"Mi": 1 << 20,
	"Gi": 1 << 30,
	"Ti": 1 << 40,
	"Pi": 1 << 50,
	"Ei": 1 << 60,
}

// formatSuffixes is the order Memory.String tries suffixes in: binary
// first, then decimal, largest first, so that every value has one form.
var formatSuffixes = []string{"Ei", "Pi", "Ti", "Gi", "Mi", "Ki", "E", "P", "T", "G", "M", "k"}

// ParseCPU reads a CPU quantity: a number of cores ("0.5", "1", "2.5",
// "1e1") or of millicores ("200m"). Negative values, finer than 1m and other
// suffixes are errors; "0" is no limit.
func ParseCPU(s string) (CPU, error) {
	r, suffix, err := parseQuantity(s)
	if err != nil {
		return 0, err
	}
	switch suffix {
	case "":
		r.Mul(r, big.NewRat(1000, 1))
	case "m":
	default:
		return 0, fmt.Errorf("%q: use a number of cores (0.5, 2) or millicores (200m)", s)
	}
	if !r.IsInt() {
		return 0, fmt.Errorf("%q: finer than 1m (a thousandth of a core)", s)
	}
	if !r.Num().IsInt64() {
		return 0, fmt.Errorf("%q: too large", s)
	}
	return CPU(r.Num().Int64()), nil
}

// ParseMemory reads a memory quantity in bytes: a plain number ("128974848",
// "129e6") or one with a binary (Ki Mi Gi Ti Pi Ei) or decimal (k M G T P E)
// suffix ("64Mi", "1.5Gi", "500M"). The result must be a whole number of
// bytes; "0" is no limit.
func ParseMemory(s string) (Memory, error) {
	r, suffix, err := parseQuantity(s)
	if err != nil {
		return 0, err
	}
	mult, ok := memorySuffixes[suffix]
	if !ok {
		if suffix == "m" {
			return 0, fmt.Errorf("%q: m means thousandths of a byte; use Mi or M", s)
		}
		return 0, fmt.Errorf("%q: use Ki, Mi, Gi (binary) or k, M, G", s)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	if !r.IsInt() {
		return 0, fmt.Errorf("%q: not a whole number of bytes", s)
	}
	if !r.Num().IsInt64() {
		return 0, fmt.Errorf("%q: too large", s)
	}
	return Memory(r.Num().Int64()), nil
}

// parseQuantity splits s into its non-negative decimal number (digits with
// at most one point, then an optional exponent such as e6) and its suffix.
// An "E" not followed by digits is the exa suffix, as in Kubernetes.
func parseQuantity(s string) (*big.Rat, string, error) {
	if s == "" {
		return nil, "", fmt.Errorf("empty quantity")
	}
	if len(s) > maxQuantityLen {
		return nil, "", fmt.Errorf("%q: longer than %d characters", s, maxQuantityLen)
	}
	if s[0] == '-' {
		return nil, "", fmt.Errorf("%q: must not be negative", s)
	}
	i, digits, point := 0, 0, false
	for ; i < len(s); i++ {
		c := s[i]
		if c >= '0' && c <= '9' {
			digits++
		} else if c == '.' && !point {
			point = true
		} else {
			break
		}
	}
	if digits == 0 {
		return nil, "", fmt.Errorf("%q: not a number", s)
	}
	mantissa, exp := s[:i], 0
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		j := i + 1
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		k := j
		for k < len(s) && s[k] >= '0' && s[k] <= '9' {
			k++
		}
		if k > j { // an exponent, not the exa suffix
			e, err := strconv.Atoi(s[i+1 : k])
			if err != nil || e > maxExponent || e < -maxExponent {
				return nil, "", fmt.Errorf("%q: exponent out of range", s)
			}
			exp, i = e, k
		}
	}
	r, ok := new(big.Rat).SetString(mantissa)
	if !ok {
		return nil, "", fmt.Errorf("%q: not a number", s)
	}
	if exp != 0 {
		p := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs(exp))), nil)
		if exp > 0 {
			r.Mul(r, new(big.Rat).SetInt(p))
		} else {
			r.Quo(r, new(big.Rat).SetInt(p))
		}
	}
	return r, s[i:], nil
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// String returns the canonical form: whole cores ("2") or millicores ("200m").
func (c CPU) String() string {
	if c%1000 == 0 {
		return strconv.FormatInt(int64(c)/1000, 10)
	}
	return strconv.FormatInt(int64(c), 10) + "m"
}

// Cores returns c as a number of cores.
func (c CPU) Cores() float64 { return float64(c) / 1000 }

// String returns the canonical form: the shortest of the plain number of
// bytes and its exact forms with a suffix, binary before decimal when they
// are as long ("64Mi", "1536Mi", "500M", "1k", "1001").
func (m Memory) String() string {
	best := strconv.FormatInt(int64(m), 10)
	if m == 0 || m == math.MinInt64 {
		return best
	}
	for _, suf := range formatSuffixes {
		if mult := memorySuffixes[suf]; m%Memory(mult) == 0 {
			if f := strconv.FormatInt(int64(m)/mult, 10) + suf; len(f) < len(best) {
				best = f
			}
		}
	}
	return best
}

// MarshalJSON writes the canonical form as a JSON string.
func (c CPU) MarshalJSON() ([]byte, error) { return json.Marshal(c.String()) }

// UnmarshalJSON reads a JSON string or number.
func (c *CPU) UnmarshalJSON(b []byte) error {
	v, err := ParseCPU(jsonScalar(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// MarshalYAML writes the canonical form.
func (c CPU) MarshalYAML() (any, error) { return c.String(), nil }

// UnmarshalYAML reads a quantity.
func (c *CPU) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseCPU(n.Value)
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// MarshalJSON writes the canonical form as a JSON string.
func (m Memory) MarshalJSON() ([]byte, error) { return json.Marshal(m.String()) }

// UnmarshalJSON reads a JSON string or number.
func (m *Memory) UnmarshalJSON(b []byte) error {
	v, err := ParseMemory(jsonScalar(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// MarshalYAML writes the canonical form.
func (m Memory) MarshalYAML() (any, error) { return m.String(), nil }

// UnmarshalYAML reads a quantity.
func (m *Memory) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseMemory(n.Value)
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// jsonScalar returns the text of a JSON string, or the raw text of anything
// else (a number), for the parse functions to judge.
func jsonScalar(b []byte) string {
	var s string
	if json.Unmarshal(b, &s) == nil {
		return s
	}
	return string(b)
}
