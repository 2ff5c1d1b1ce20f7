//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package ota

import "os"

// mapFile reads path; platforms without mmap hold it on the heap.
func mapFile(path string) (data []byte, unmap func() error, err error) {
	data, err = os.ReadFile(path)
	return data, func() error { return nil }, err
}
