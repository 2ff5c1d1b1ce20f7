package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

const pathServices = "/api/v1/services"

// instanceJSON is a registry instance as the hub's REST API shows it.
type instanceJSON struct {
	Service   string            `json:"service"`
	ID        string            `json:"id"`
	Address   string            `json:"address"`
	Port      int               `json:"port"`
	Tags      []string          `json:"tags"`
	Meta      map[string]string `json:"meta"`
	Health    string            `json:"health"`
	Output    string            `json:"output"`
	Source    string            `json:"source"`
	Device    string            `json:"device"`
	TTL       string            `json:"ttl"`
	ExpiresAt *time.Time        `json:"expires_at"`
}

// instancesJSON is the body of GET /api/v1/services/{name} and of each
// watch event.
type instancesJSON struct {
	Service   string         `json:"service"`
	Instances []instanceJSON `json:"instances"`
}

func newServicesCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "services",
		Aliases: []string{"service", "svc"},
		Short:   "Find, register and watch service instances in the hub's registry",
		Long: `services works with the hub's service registry (docs/registry.md). Services
deployed to devices ("outpost deploy") whose spec lists ports register themselves:
one instance per device, passing while the device reports the service running and
healthy. Other programs register with a TTL they renew, or with an HTTP or TCP check
the hub runs. "resolve" lists the passing instances of a service, "watch" follows
them as they change.`,
		Example: `  outpost services ls
  outpost services resolve web --tag blue
  outpost services watch web
  outpost services register billing --address 10.0.0.8 --port 9000 --ttl 30s
  outpost services renew billing 10.0.0.8:9000
  outpost services deregister billing 10.0.0.8:9000`,
	}
	cmd.AddCommand(newServicesListCmd(g), newServicesResolveCmd(g), newServicesWatchCmd(g),
		newServicesRegisterCmd(g), newServicesRenewCmd(g), newServicesDeregisterCmd(g))
	return cmd
}

func registryPath(name string, rest ...string) string {
	p := pathServices + "/" + url.PathEscape(name)
	for _, r := range rest {
		p += "/" + url.PathEscape(r)
	}
	return p
}

func newServicesListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the services with their instance counts",
		Long: `ls lists every service that has instances, with how many there are and how many
of them pass their health check.`,
		Example: `  outpost services ls
  outpost services ls -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var resp struct {
				Services []struct {
					Name      string `json:"name"`
					Instances int    `json:"instances"`
					Passing   int    `json:"passing"`
				} `json:"services"`
			}
			raw, err := c.doJSON(cmd.Context(), http.MethodGet, pathServices, nil, nil, &resp)
			if err != nil {
				return fmt.Errorf("listing services: %w", err)
			}
			if g.jsonOutput() {
				return writeJSON(g.stdout, raw)
			}
			rows := make([][]string, 0, len(resp.Services))
			for _, s := range resp.Services {
				rows = append(rows, []string{s.Name, strconv.Itoa(s.Instances), strconv.Itoa(s.Passing)})
			}
			return writeTable(g.stdout, []string{"SERVICE", "INSTANCES", "PASSING"}, rows)
		},
	}
}

func newServicesResolveCmd(g *globals) *cobra.Command {
	var (
		tags []string
		all  bool
	)
	cmd := &cobra.Command{
		Use:   "resolve NAME [--tag TAG]... [--all]",
		Short: "List a service's passing instances",
		Long: `resolve lists the instances of a service that pass their health check and carry
every --tag: what a client of the service should connect to. --all lists every
instance whatever its health, with the output of its last check.`,
		Example: `  outpost services resolve web
  outpost services resolve web --tag blue --tag eu
  outpost services resolve web --all
  outpost services resolve web -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			q := url.Values{}
			if len(tags) > 0 {
				q["tag"] = tags
			}
			if all {
				q.Set("all", "true")
			}
			var resp instancesJSON
			raw, err := c.doJSON(cmd.Context(), http.MethodGet, registryPath(args[0]), q, nil, &resp)
			if err != nil {
				return fmt.Errorf("resolving service %q: %w", args[0], err)
			}
			if g.jsonOutput() {
				return writeJSON(g.stdout, raw)
			}
			header := []string{"ID", "ADDRESS", "PORT", "HEALTH", "SOURCE", "DEVICE", "TAGS"}
			if all {
				header = append(header, "OUTPUT")
			}
			rows := make([][]string, 0, len(resp.Instances))
			for _, in := range resp.Instances {
				row := []string{in.ID, in.Address, strconv.Itoa(in.Port), in.Health, in.Source, orDash(in.Device), orDash(strings.Join(in.Tags, ","))}
				if all {
					row = append(row, orDash(in.Output))
				}
				rows = append(rows, row)
			}
			return writeTable(g.stdout, header, rows)
		},
	}
	cmd.Flags().StringArrayVar(&tags, "tag", nil, "only instances with this tag (repeatable; all must match)")
	cmd.Flags().BoolVar(&all, "all", false, "list every instance, whatever its health")
	return cmd
}

func newServicesWatchCmd(g *globals) *cobra.Command {
	var tags []string
	cmd := &cobra.Command{
		Use:   "watch NAME [--tag TAG]...",
		Short: "Print a service's passing instances each time they change",
		Long: `watch prints the passing instances of a service (those carrying every --tag) at
once and again after every change, one line each time, until interrupted. With
-o json each line is the hub's JSON snapshot.`,
		Example: `  outpost services watch web
  outpost services watch web --tag blue -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := g.target(cmd)
			if err != nil {
				return err
			}
			err = g.watchService(cmd.Context(), t, args[0], tags)
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		},
	}
	cmd.Flags().StringArrayVar(&tags, "tag", nil, "only instances with this tag (repeatable; all must match)")
	return cmd
}

// watchService reads the hub's event stream and prints one line per
// snapshot until ctx ends or the hub closes the stream.
func (g *globals) watchService(ctx context.Context, t target, name string, tags []string) error {
	u := t.hub + registryPath(name, "watch")
	if len(tags) > 0 {
		u += "?" + url.Values{"tag": tags}.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("User-Agent", "outpost/"+Version)
	req.Header.Set("Authorization", "Bearer "+t.token)
	// No client timeout: the stream lasts until interrupted.
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("cannot reach hub at %s: %w", t.hub, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("watching service %q: %w", name, decodeError(resp))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), maxResponseBody)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			event = ""
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:") && event == "instances":
			if err := g.printSnapshot([]byte(strings.TrimSpace(strings.TrimPrefix(line, "data:")))); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("watching service %q: %w", name, err)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("watching service %q: the hub closed the stream", name)
}

// printSnapshot prints one watch snapshot as a line.
func (g *globals) printSnapshot(data []byte) error {
	if g.jsonOutput() {
		_, err := fmt.Fprintf(g.stdout, "%s\n", data)
		return err
	}
	var s instancesJSON
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("decoding a watch event: %w", err)
	}
	addrs := make([]string, len(s.Instances))
	for i, in := range s.Instances {
		addrs[i] = sanitize(fmt.Sprintf("%s=%s", in.ID, netJoin(in.Address, in.Port)))
	}
	list := "none"
	if len(addrs) > 0 {
		list = strings.Join(addrs, " ")
	}
	_, err := fmt.Fprintf(g.stdout, "%s %s: %d passing: %s\n", g.now().Format(time.TimeOnly), sanitize(s.Service), len(s.Instances), list)
	return err
}

func netJoin(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

func newServicesRegisterCmd(g *globals) *cobra.Command {
	var (
		id, address, check string
		port               int
		tags, meta         []string
		ttl, interval      time.Duration
		timeout            time.Duration
	)
	cmd := &cobra.Command{
		Use:   "register NAME --address ADDR --port PORT (--ttl DURATION | --check http:/PATH | --check tcp)",
		Short: "Register an instance of a service",
		Long: `register adds an instance of a service to the registry, or replaces the one with the
same id (default ADDRESS:PORT). Give one way to keep it healthy:
  --ttl 30s         the instance passes for 30s after each "outpost services renew"
  --check http:/hz  the hub GETs http://ADDRESS:PORT/hz every --interval (2xx or 3xx passes)
  --check tcp       the hub connects to ADDRESS:PORT every --interval
A check instance is critical until its first check passes.`,
		Example: `  outpost services register billing --address 10.0.0.8 --port 9000 --ttl 30s
  outpost services register web --address 10.0.0.5 --port 8080 --check http:/healthz --tag blue --meta zone=a
  outpost services register db --id db-1 --address db.local --port 5432 --check tcp --interval 5s`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := map[string]any{"address": address, "port": port}
			var errs []error
			if address == "" {
				errs = append(errs, errors.New("--address is required"))
			}
			if port == 0 {
				errs = append(errs, errors.New("--port is required"))
			}
			switch {
			case ttl > 0 && check != "":
				errs = append(errs, errors.New("--ttl and --check: give one, not both"))
			case ttl > 0:
				req["ttl"] = ttl.String()
			case check != "":
				c, err := parseCheck(check)
				if err != nil {
					errs = append(errs, err)
				}
				if interval > 0 {
					c["interval"] = interval.String()
				}
				if timeout > 0 {
					c["timeout"] = timeout.String()
				}
				req["check"] = c
			default:
				errs = append(errs, errors.New("--ttl or --check is required"))
			}
			if id != "" {
				req["id"] = id
			}
			if len(tags) > 0 {
				req["tags"] = tags
			}
			if len(meta) > 0 {
				m := map[string]string{}
				for _, kv := range meta {
					k, v, ok := strings.Cut(kv, "=")
					if !ok || k == "" {
						errs = append(errs, fmt.Errorf("--meta %q: want KEY=VALUE", kv))
						continue
					}
					m[k] = v
				}
				req["meta"] = m
			}
			if err := errors.Join(errs...); err != nil {
				return err
			}
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var in instanceJSON
			raw, err := c.doJSON(cmd.Context(), http.MethodPost, registryPath(args[0], "instances"), nil, req, &in)
			if err != nil {
				return fmt.Errorf("registering an instance of %q: %w", args[0], err)
			}
			if g.jsonOutput() {
				return writeJSON(g.stdout, raw)
			}
			fmt.Fprintf(g.stdout, "Registered %s/%s at %s (%s).\n", sanitize(in.Service), sanitize(in.ID), sanitize(netJoin(in.Address, in.Port)), in.Health)
			if in.TTL != "" {
				fmt.Fprintf(g.stdout, "Renew it within %s: outpost services renew %s %s\n", in.TTL, sanitize(in.Service), sanitize(in.ID))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&address, "address", "", "IP address or host name clients connect to")
	f.IntVar(&port, "port", 0, "TCP port clients connect to")
	f.StringVar(&id, "id", "", "instance id (default ADDRESS:PORT)")
	f.StringArrayVar(&tags, "tag", nil, "tag the instance (repeatable)")
	f.StringArrayVar(&meta, "meta", nil, "metadata, KEY=VALUE (repeatable)")
	f.DurationVar(&ttl, "ttl", 0, "passing for this long after each renewal")
	f.StringVar(&check, "check", "", `health check the hub runs: "http:/PATH" or "tcp"`)
	f.DurationVar(&interval, "interval", 0, "with --check: how often it runs (default 10s)")
	f.DurationVar(&timeout, "timeout", 0, "with --check: how long one check may take (default 5s)")
	return cmd
}

// parseCheck reads --check: "tcp", "http" or "http:/PATH".
func parseCheck(s string) (map[string]any, error) {
	typ, path, _ := strings.Cut(s, ":")
	switch {
	case typ == "tcp" && path == "":
		return map[string]any{"type": "tcp"}, nil
	case typ == "http" && (path == "" || strings.HasPrefix(path, "/")):
		return map[string]any{"type": "http", "path": path}, nil
	}
	return map[string]any{}, fmt.Errorf(`--check %q: want "http:/PATH" or "tcp"`, s)
}

func newServicesRenewCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "renew NAME ID",
		Short: "Renew a TTL instance: it passes for another TTL",
		Long: `renew marks an instance registered with --ttl passing for another TTL. An instance
not renewed in time turns critical; register it again if renew says it is gone.`,
		Example: `  outpost services renew billing 10.0.0.8:9000
  while sleep 10; do outpost services renew billing 10.0.0.8:9000; done`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var in instanceJSON
			raw, err := c.doJSON(cmd.Context(), http.MethodPut, registryPath(args[0], "instances", args[1], "renew"), nil, nil, &in)
			if err != nil {
				return fmt.Errorf("renewing %s/%s: %w", args[0], args[1], err)
			}
			if g.jsonOutput() {
				return writeJSON(g.stdout, raw)
			}
			until := ""
			if in.ExpiresAt != nil {
				until = " until " + in.ExpiresAt.Local().Format(time.DateTime)
			}
			fmt.Fprintf(g.stdout, "Renewed %s/%s%s.\n", sanitize(in.Service), sanitize(in.ID), until)
			return nil
		},
	}
}

func newServicesDeregisterCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "deregister NAME ID",
		Aliases: []string{"rm"},
		Short:   "Remove an instance from the registry",
		Long: `deregister removes an instance. An instance a device's agent registered comes back
while the service is deployed to the device: remove the deployment instead.`,
		Example: `  outpost services deregister billing 10.0.0.8:9000`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			if _, err := c.do(cmd.Context(), http.MethodDelete, registryPath(args[0], "instances", args[1]), nil, nil); err != nil {
				return fmt.Errorf("deregistering %s/%s: %w", args[0], args[1], err)
			}
			if g.jsonOutput() {
				return writeJSONValue(g.stdout, map[string]string{"deregistered": args[0] + "/" + args[1]})
			}
			fmt.Fprintf(g.stdout, "Deregistered %s/%s.\n", sanitize(args[0]), sanitize(args[1]))
			return nil
		},
	}
}
