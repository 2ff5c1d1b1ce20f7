// Package coaptick runs go-coap's periodic housekeeping on goroutines that stop
// and are waited for; the hub's CoAP server and the agent's CoAP client share it.
package coaptick

import (
	"sync"
	"time"
)

// Ticker runs go-coap's housekeeping (retransmission and expiry checks)
// on goroutines that stop, and are waited for, in stop. go-coap's default
// runner sleeps in an untracked goroutine for up to 4 s after a close.
type Ticker struct {
	mu      sync.Mutex // guards stopped and wg.Add
	stopped bool
	done    chan struct{}
	wg      sync.WaitGroup
}

func New() *Ticker { return &Ticker{done: make(chan struct{})} }

// Run calls f every second until f returns false or stop is called; it
// has the signature of go-coap's periodic.Func.
func (p *Ticker) Run(f func(now time.Time) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-p.done:
				return
			case now := <-t.C:
				if !f(now) {
					return
				}
			}
		}
	}()
}

// Stop ends every run goroutine and waits for them; safe to call twice.
func (p *Ticker) Stop() {
	p.mu.Lock()
	if !p.stopped {
		p.stopped = true
		close(p.done)
	}
	p.mu.Unlock()
	p.wg.Wait()
}
