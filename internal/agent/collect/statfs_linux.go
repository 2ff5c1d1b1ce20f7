package collect

import (
	"fmt"
	"syscall"
)

// diskUsedPercent returns the used share of the file system mounted at
// path as df shows it: used blocks over used plus those available to
// unprivileged users.
func diskUsedPercent(path string) (float64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, fmt.Errorf("statfs: %w", err)
	}
	used := st.Blocks - st.Bfree
	if used+st.Bavail == 0 {
		return 0, nil
	}
	return 100 * float64(used) / float64(used+st.Bavail), nil
}
