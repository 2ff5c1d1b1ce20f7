//go:build !linux

package collect

import "errors"

// diskUsedPercent is implemented for Linux only.
func diskUsedPercent(string) (float64, error) {
	return 0, errors.New("disk use is read on Linux only")
}
