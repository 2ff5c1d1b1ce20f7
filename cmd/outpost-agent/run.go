package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/agent"
	"github.com/outpost-edge/outpost/internal/agent/config"
	"github.com/outpost-edge/outpost/internal/agent/join"
	"github.com/outpost-edge/outpost/internal/agent/ota"
	"github.com/outpost-edge/outpost/internal/agent/slots"
	"github.com/outpost-edge/outpost/internal/buildinfo"
)

// defaultDataDir is where join writes and run reads when --data is not given.
const defaultDataDir = "outpost-agent-data"

const usage = `outpost-agent — the Outpost edge agent

Usage:
  outpost-agent <command> [flags]

Commands:
  join      register this device with a hub using a one-time join token
  run       run the agent: read sensors and send telemetry to the hub
  version   print the version

Run "outpost-agent <command> -h" for a command's flags.

Example:
  outpost-agent join --hub http://hub.example:8080 --token ojt_…
  outpost-agent run
`

// usageError means the command line was wrong; its message and the usage
// have been printed already, and the exit code is 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// exitCode turns run's error into the process exit code, printing the
// error as one line on stderr unless it was a usage error (printed already).
func exitCode(err error, stderr io.Writer) int {
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		return 2
	case errors.Is(err, slots.ErrRestart):
		// Not a failure: systemd starts the agent again, and the launcher
		// runs the staged update.
		fmt.Fprintf(stderr, "outpost-agent: %v\n", err)
		return slots.RestartExitCode
	case errors.Is(err, slots.ErrWindowExpired):
		fmt.Fprintf(stderr, "outpost-agent: %v; rolled back\n", err)
		return slots.TrialExpiredExitCode
	default:
		fmt.Fprintf(stderr, "outpost-agent: %v\n", err)
		return 1
	}
}

// run executes the command line args (without the program name).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{"no command given"}
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "join":
		return runJoin(ctx, rest, stdout, stderr)
	case "run":
		return runAgent(ctx, rest, stdout, stderr)
	case "version":
		return runVersion(rest, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "outpost-agent: unknown command %q\n\n%s", cmd, usage)
		return usageError{"unknown command " + cmd}
	}
}

// command describes a subcommand for its -h output.
type command struct {
	name, synopsis, about, example string
}

// parse parses args into fs. -h prints the help to stdout and returns
// flag.ErrHelp; a bad flag or a stray argument prints the error and the
// help to stderr and returns a usageError.
func parse(fs *flag.FlagSet, c command, args []string, stdout, stderr io.Writer) error {
	fs.SetOutput(io.Discard)
	help := func(w io.Writer) {
		fmt.Fprintf(w, "Usage:\n  outpost-agent %s %s\n\n%s\n\nFlags:\n", c.name, c.synopsis, c.about)
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		fmt.Fprintf(w, "\nExample:\n%s\n", c.example)
	}
	err := fs.Parse(args)
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		help(stdout)
		return flag.ErrHelp
	default:
		fmt.Fprintf(stderr, "outpost-agent %s: %v\n\n", c.name, err)
		help(stderr)
		return usageError{err.Error()}
	}
}

func helpOK(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

func runJoin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("join", flag.ContinueOnError)
	hub := fs.String("hub", os.Getenv("OUTPOST_HUB"), "hub `URL`, e.g. http://hub.example:8080 (default $OUTPOST_HUB)")
	token := fs.String("token", "", "one-time join `token` from `outpost devices add` (default $OUTPOST_JOIN_TOKEN)")
	dataDir := fs.String("data", defaultDataDir, "data `directory`; agent.yaml is written there")
	force := fs.Bool("force", false, "overwrite an existing agent.yaml")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the hub")
	err := parse(fs, command{
		name:     "join",
		synopsis: "--hub URL --token TOKEN [--data DIR] [--force]",
		about: "Registers this device with the hub: trades the one-time join token for the device's\n" +
			"MQTT credentials and writes them, with default settings, to DIR/agent.yaml (mode 0600).",
		example: "  outpost-agent join --hub http://hub.example:8080 --token ojt_… --data /var/lib/outpost-agent",
	}, args, stdout, stderr)
	if err != nil {
		return helpOK(err)
	}
	if *token == "" {
		*token = os.Getenv("OUTPOST_JOIN_TOKEN")
	}
	var missing []string
	if *hub == "" {
		missing = append(missing, "--hub")
	}
	if *token == "" {
		missing = append(missing, "--token")
	}
	if len(missing) > 0 {
		msg := "missing " + strings.Join(missing, " and ")
		fmt.Fprintf(stderr, "outpost-agent join: %s\nRun \"outpost-agent join -h\" for help.\n", msg)
		return usageError{msg}
	}

	path := filepath.Join(*dataDir, config.FileName)
	if _, err := os.Stat(path); err == nil && !*force {
		return fmt.Errorf("%s exists already; this device has joined before (use --force to replace it)", path)
	}
	// The token works only once: make sure the result can be saved before
	// spending it.
	if err := checkWritable(*dataDir); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	joined, err := join.Join(ctx, *hub, *token, &http.Client{Timeout: *timeout})
	if err != nil {
		return err
	}
	cfg := joined.Config
	if err := ota.StoreTrustedRoot(*dataDir, joined.TUFRoot); err != nil {
		return err
	}
	if err := cfg.Save(path); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Joined as device %q; configuration written to %s.\nStart the agent with:\n  outpost-agent run --data %s\n",
		cfg.DeviceID, path, *dataDir)
	return nil
}

// checkWritable creates dir if needed and checks a file can be created in it.
func checkWritable(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating data directory: %w", err)
	}
	f, err := os.CreateTemp(dir, ".write-test-*")
	if err != nil {
		return fmt.Errorf("data directory %s is not writable: %w", dir, err)
	}
	_ = f.Close()
	return os.Remove(f.Name())
}

func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	dataDir := fs.String("data", defaultDataDir, "data `directory` for the agent's state")
	cfgPath := fs.String("config", "", "configuration `file` (default DIR/agent.yaml)")
	level := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	noSlots := fs.Bool("no-slots", false, "run this binary even if an update slot is active or on trial (also $"+slots.EnvDisable+"=1)")
	err := parse(fs, command{
		name:     "run",
		synopsis: "[--data DIR] [--config FILE] [--log-level LEVEL] [--no-slots]",
		about: "Runs the agent until SIGINT or SIGTERM: reads the configured sensors and publishes their\n" +
			"telemetry to the hub over MQTT. Logs go to stderr. OUTPOST_AGENT_* environment variables\n" +
			"override some configuration keys (see docs/agent.md).",
		example: "  outpost-agent run --data /var/lib/outpost-agent --log-level debug",
	}, args, stdout, stderr)
	if err != nil {
		return helpOK(err)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "outpost-agent run: --log-level %q: want debug, info, warn or error\n", *level)
		return usageError{"bad log level"}
	}
	levelVar := new(slog.LevelVar)
	levelVar.Set(lvl)
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: levelVar}))
	// The launcher comes first: it may replace this process with the
	// active update slot or a trial (docs/agent-update.md), and only the
	// binary that really runs should read the configuration.
	var launched slots.Launched
	if !*noSlots {
		launched = slots.Launch(slots.LaunchOptions{
			DataDir: *dataDir,
			Args:    append([]string{os.Args[0], "run"}, args...),
			Version: version,
			Logger:  logger.With("component", "slots"),
		})
	}
	if *cfgPath == "" {
		*cfgPath = filepath.Join(*dataDir, config.FileName)
	}
	cfg, err := config.Load(*cfgPath)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s not found; run `outpost-agent join` first or pass --config", *cfgPath)
	}
	if err != nil {
		return err
	}
	setGCPercent(os.LookupEnv)
	a, err := agent.New(cfg, agent.Options{Logger: logger, DataDir: *dataDir, Version: version, LogLevel: levelVar})
	if err != nil {
		return err
	}
	if !launched.Trial {
		return a.Run(ctx)
	}
	return runTrial(ctx, a, *dataDir, launched, logger)
}

// trialHealthy is the self-check an update trial must pass to commit:
// connected to the hub, and the online status acknowledged by the broker.
func trialHealthy(s agent.Stats) bool { return s.Running && s.Connected && s.StatusSent > 0 }

// runTrial runs the agent as an update trial: it commits the trial once the
// agent is healthy, and stops the agent with slots.ErrWindowExpired when
// the commit window passes first (the trial has rolled back then).
func runTrial(ctx context.Context, a *agent.Agent, dataDir string, l slots.Launched, logger *slog.Logger) error {
	log := logger.With("component", "slots", "version", l.Version, "slot", l.Slot)
	log.Info("running as an update trial", "deadline", l.Deadline)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		err := a.Run(ctx)
		cancel()
		done <- err
	}()
	err := slots.AwaitCommit(ctx, dataDir, l, func() bool { return trialHealthy(a.Stats()) })
	switch {
	case err == nil:
		log.Info("update trial committed: this version now starts at boot")
	case errors.Is(err, slots.ErrWindowExpired):
		log.Error("update trial not healthy within its commit window; stopping, the previous version starts next", "err", err)
		cancel()
		<-done
		return err
	case ctx.Err() == nil:
		// The trial stays pending: the next start retries or rolls back.
		log.Error("committing the update trial failed", "err", err)
	}
	return <-done
}

func runVersion(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	err := parse(fs, command{
		name:     "version",
		synopsis: "",
		about:    "Prints the agent version, the commit it was built from, the Go version and the platform.",
		example:  "  outpost-agent version",
	}, args, stdout, stderr)
	if err != nil {
		return helpOK(err)
	}
	plat := strings.Replace(buildinfo.Platform(), "-", "/", 1)
	fmt.Fprintf(stdout, "outpost-agent %s (commit %s, %s %s)\n", version, buildinfo.Commit(), runtime.Version(), plat)
	return nil
}

// agentGCPercent is the garbage collector's target for the agent process:
// half Go's default heap headroom keeps a 20-sensor agent near 14 MiB RSS
// instead of 16 (BENCHMARKS.md) for no measurable CPU. GOGC in the
// environment still wins.
const agentGCPercent = 50

func setGCPercent(lookup func(string) (string, bool)) {
	if _, set := lookup("GOGC"); !set {
		debug.SetGCPercent(agentGCPercent)
	}
}
