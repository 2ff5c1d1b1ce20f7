package ota

import (
	"strconv"
	"strings"
)

// CompareVersions compares two artifact versions with semantic-version
// precedence and returns -1, 0 or +1. A leading "v" and "+build" metadata
// are ignored; missing numeric parts count as 0 ("1.2" == "1.2.0"); a
// pre-release ("1.2.0-rc.1") sorts before its release. Parts that are not
// numbers compare as strings, so any two versions are ordered.
func CompareVersions(a, b string) int {
	a, b = strings.TrimPrefix(a, "v"), strings.TrimPrefix(b, "v")
	a, _, _ = strings.Cut(a, "+")
	b, _, _ = strings.Cut(b, "+")
	aCore, aPre, aHasPre := strings.Cut(a, "-")
	bCore, bPre, bHasPre := strings.Cut(b, "-")
	if c := compareParts(strings.Split(aCore, "."), strings.Split(bCore, "."), "0"); c != 0 {
		return c
	}
	switch {
	case aHasPre && !bHasPre:
		return -1
	case !aHasPre && bHasPre:
		return 1
	case !aHasPre && !bHasPre:
		return 0
	}
	return compareParts(strings.Split(aPre, "."), strings.Split(bPre, "."), "")
}

// compareParts compares dot-separated identifiers; a missing identifier is
// pad (a shorter pre-release list sorts first when pad is "").
func compareParts(a, b []string, pad string) int {
	for i := 0; i < max(len(a), len(b)); i++ {
		x, y := pad, pad
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if c := compareIdent(x, y); c != 0 {
			return c
		}
	}
	return 0
}

// compareIdent orders numbers numerically, numbers before words, and words
// as strings; the empty identifier sorts first.
func compareIdent(x, y string) int {
	if x == y {
		return 0
	}
	if x == "" {
		return -1
	}
	if y == "" {
		return 1
	}
	xn, xErr := strconv.ParseUint(x, 10, 64)
	yn, yErr := strconv.ParseUint(y, 10, 64)
	switch {
	case xErr == nil && yErr == nil:
		if xn < yn {
			return -1
		}
		if xn > yn {
			return 1
		}
		return strings.Compare(x, y) // "01" vs "1"
	case xErr == nil:
		return -1
	case yErr == nil:
		return 1
	}
	return strings.Compare(x, y)
}
