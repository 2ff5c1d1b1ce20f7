//go:build !linux

package workload

import "syscall"

// limiter enforces nothing outside Linux.
type limiter struct{ base, noV2 string }

func newLimiter(string) *limiter { return &limiter{noV2: "not Linux"} }

type limitPlan struct{ status Limits }

func (l *limiter) prepare(_ string, r Resources) *limitPlan {
	p := &limitPlan{}
	p.status.CPU = LimitStatus{Requested: r.CPUMilli, Via: ViaNone, Reason: "limits are enforced on Linux only"}
	p.status.Memory = LimitStatus{Requested: r.MemoryBytes, Via: ViaNone, Reason: "limits are enforced on Linux only"}
	return p
}

func (p *limitPlan) sysProcAttr(*syscall.SysProcAttr, bool) {}
func (p *limitPlan) canRetryWithoutFD() bool                { return false }
func (p *limitPlan) afterStart(int, bool)                   {}
func (p *limitPlan) release()                               {}
func (p *limitPlan) oomKilled() bool                        { return false }
func (p *limitPlan) watch(int, <-chan struct{})             {}
func (p *limitPlan) overLimitError() string                 { return "" }
func (p *limitPlan) killAll()                               {}
func (p *limitPlan) cleanup()                               {}
