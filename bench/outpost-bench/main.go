// Command outpost-bench measures Outpost end to end for BENCHMARKS.md: it
// builds the real binaries, starts a real hub and agents on loopback, and
// prints one result line per figure. The scripts in bench/ call it.
//
//	go run ./bench/outpost-bench payload
//	go run ./bench/outpost-bench ingest --devices 50 --duration 20s
//	go run ./bench/outpost-bench drain --points 200000
//	go run ./bench/outpost-bench start --runs 20
//	go run ./bench/outpost-bench rss --sources 20 --rate 10 --duration 60s
//	go run ./bench/outpost-bench delta patch:old-agent=new-agent
//	go run ./bench/outpost-bench rest --concurrency 32 --duration 10s
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
)

const usage = `usage: outpost-bench <payload|ingest|drain|start|rss|delta|rest> [flags]
Run from the repository root; -h after a command lists its flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "outpost-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return errors.New("no command")
	}
	cmds := map[string]func(context.Context, []string, io.Writer) error{
		"payload": runPayload,
		"ingest":  runIngest,
		"drain":   runDrain,
		"start":   runStart,
		"rss":     runRSS,
		"delta":   runDelta,
		"rest":    runREST,
		// gin-ping is the server rest starts as a child process.
		"gin-ping": runGinPing,
	}
	fn, ok := cmds[args[0]]
	if !ok {
		fmt.Fprint(os.Stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
	return fn(ctx, args[1:], stdout)
}
