package cli

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

const pathRollouts = "/api/v1/rollouts"

// rolloutJSON is a rollout as GET /api/v1/rollouts/{id} returns it.
type rolloutJSON struct {
	ID       string `json:"id"`
	Artifact struct {
		Name    string `json:"name"`
		Version string `json:"version"`
		Type    string `json:"type"`
	} `json:"artifact"`
	Selector         map[string]string `json:"selector"`
	Status           string            `json:"status"`
	Reason           string            `json:"reason"`
	Devices          int               `json:"devices"`
	Waves            []string          `json:"waves"`
	WaveBounds       []int             `json:"wave_bounds"`
	Wave             int               `json:"wave"`
	SuccessThreshold float64           `json:"success_threshold"`
	Soak             string            `json:"soak"`
	SoakUntil        *time.Time        `json:"soak_until"`
	CreatedAt        apiTime           `json:"created_at"`
	UpdatedAt        apiTime           `json:"updated_at"`
	WaveStates       []struct {
		Wave    int    `json:"wave"`
		JobID   string `json:"job_id"`
		Started bool   `json:"started"`
		Counts  struct {
			Devices   int `json:"devices"`
			Succeeded int `json:"succeeded"`
			Failed    int `json:"failed"`
			Canceled  int `json:"canceled"`
			Pending   int `json:"pending"`
		} `json:"counts"`
		Executions []struct {
			Device        string            `json:"device"`
			Status        string            `json:"status"`
			StatusDetails map[string]string `json:"status_details"`
		} `json:"executions"`
	} `json:"wave_states"`
}

func newRolloutsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "rollouts",
		Aliases: []string{"rollout"},
		Short:   "Roll an artifact out to a fleet in waves that stop themselves",
		Long: `rollouts sends a published artifact to the devices a label selector matches, in
cumulative waves. A wave's devices each get a job; the next wave starts when every
device of the current one has ended its job, at least --success-threshold of them
succeeded, and --soak has passed. When failures make the threshold unreachable the
rollout pauses and says why; "resume" accepts the wave's failures and goes on,
"abort" cancels the jobs that have not run. Rollouts live in the hub's store and go
on after a hub restart.`,
		Example: `  outpost rollouts create --artifact outpost-agent@1.4.0 --selector arch=arm64 \
      --waves 1%,10%,50%,100% --success-threshold 95% --soak 5m
  outpost rollouts ls
  outpost rollouts show outpost-agent-1_4_0-3f9a
  outpost rollouts pause outpost-agent-1_4_0-3f9a --reason "investigating"
  outpost rollouts abort outpost-agent-1_4_0-3f9a`,
	}
	cmd.AddCommand(newRolloutsCreateCmd(g), newRolloutsListCmd(g), newRolloutsShowCmd(g),
		newRolloutActionCmd(g, "pause", "Stop a rollout from starting further waves", true),
		newRolloutActionCmd(g, "resume", "Continue a paused rollout, accepting the current wave's failures", false),
		newRolloutActionCmd(g, "abort", "End a rollout and cancel its jobs that have not run", true))
	return cmd
}

func newRolloutsCreateCmd(g *globals) *cobra.Command {
	var (
		id, artifact, threshold, waves string
		selector                       []string
		soak, queued, inProgress       time.Duration
	)
	cmd := &cobra.Command{
		Use:   "create --artifact NAME@VERSION [--selector LABEL=VALUE …]",
		Short: "Start a rollout",
		Long: `create starts a rollout of a published artifact (see "outpost artifacts ls") to the
devices the selector matches (all devices without --selector). The device list is
fixed when the rollout is created. Waves are cumulative: "1%,10%,50%,100%" means the
first 1% of the devices, then up to 10%, and so on; a wave may also be a count ("5").
A device that does not start its job within --queued-timeout (offline) counts as
TIMED_OUT, as does one that does not finish within --in-progress-timeout.`,
		Example: `  outpost rollouts create --artifact outpost-agent@1.4.0 --selector arch=arm64
  outpost rollouts create --artifact model@2.0.0 --selector site=plant-1 --waves 5,50%,100% \
      --success-threshold 90% --soak 10m --queued-timeout 2h --id model-2-plant-1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if artifact == "" {
				return fmt.Errorf("--artifact is required: NAME@VERSION, e.g. outpost-agent@1.4.0")
			}
			var sel map[string]string
			if len(selector) > 0 {
				var err error
				if sel, err = parseSelector(selector); err != nil {
					return err
				}
			}
			req := map[string]any{
				"artifact": artifact, "waves": strings.Split(waves, ","), "success_threshold": threshold,
				"soak": soak.String(), "queued_timeout": queued.String(), "in_progress_timeout": inProgress.String(),
			}
			if id != "" {
				req["id"] = id
			}
			if sel != nil {
				req["selector"] = sel
			}
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var r rolloutJSON
			raw, err := c.doJSON(cmd.Context(), http.MethodPost, pathRollouts, nil, req, &r)
			if err != nil {
				return fmt.Errorf("creating rollout: %w", err)
			}
			if g.jsonOutput() {
				return writeJSON(g.stdout, raw)
			}
			fmt.Fprintf(g.stdout, "Rollout %s started: %s@%s to %d devices in %d waves.\n\n", r.ID, r.Artifact.Name, r.Artifact.Version, r.Devices, len(r.WaveBounds))
			return g.printRollout(&r, false)
		},
	}
	f := cmd.Flags()
	f.StringVar(&artifact, "artifact", "", "artifact to roll out, NAME@VERSION")
	f.StringArrayVar(&selector, "selector", nil, "only devices with this label, LABEL=VALUE (repeatable; all must match)")
	f.StringVar(&waves, "waves", "1%,10%,50%,100%", "cumulative wave sizes, percentages or counts, comma-separated")
	f.StringVar(&threshold, "success-threshold", "95%", "share of a wave's devices that must succeed")
	f.DurationVar(&soak, "soak", 5*time.Minute, "how long a successful wave is watched before the next starts")
	f.DurationVar(&queued, "queued-timeout", 24*time.Hour, "a device that has not started its job by then is TIMED_OUT")
	f.DurationVar(&inProgress, "in-progress-timeout", 30*time.Minute, "a device that has not finished its job by then is TIMED_OUT")
	f.StringVar(&id, "id", "", "rollout id (default: derived from the artifact)")
	return cmd
}

func newRolloutsListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List rollouts, newest first",
		Example: `  outpost rollouts ls
  outpost rollouts ls -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var resp struct {
				Rollouts []rolloutJSON `json:"rollouts"`
			}
			raw, err := c.doJSON(cmd.Context(), http.MethodGet, pathRollouts, nil, nil, &resp)
			if err != nil {
				return fmt.Errorf("listing rollouts: %w", err)
			}
			if g.jsonOutput() {
				return writeJSON(g.stdout, raw)
			}
			rows := make([][]string, 0, len(resp.Rollouts))
			for _, r := range resp.Rollouts {
				rows = append(rows, []string{r.ID, r.Artifact.Name + "@" + r.Artifact.Version, r.Status,
					fmt.Sprintf("%d/%d", r.Wave, len(r.WaveBounds)), fmt.Sprint(r.Devices), relativeTime(r.CreatedAt.Time, g.now()), r.Reason})
			}
			return writeTable(g.stdout, []string{"ID", "ARTIFACT", "STATUS", "WAVE", "DEVICES", "CREATED", "REASON"}, rows)
		},
	}
}

func newRolloutsShowCmd(g *globals) *cobra.Command {
	var devices bool
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show a rollout: its waves and, with --devices, every device's job",
		Example: `  outpost rollouts show outpost-agent-1_4_0-3f9a
  outpost rollouts show outpost-agent-1_4_0-3f9a --devices
  outpost rollouts show outpost-agent-1_4_0-3f9a -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var r rolloutJSON
			raw, err := c.doJSON(cmd.Context(), http.MethodGet, pathRollouts+"/"+url.PathEscape(args[0]), nil, nil, &r)
			if err != nil {
				return fmt.Errorf("showing rollout %q: %w", args[0], err)
			}
			if g.jsonOutput() {
				return writeJSON(g.stdout, raw)
			}
			return g.printRollout(&r, devices)
		},
	}
	cmd.Flags().BoolVar(&devices, "devices", false, "list every device of the started waves with its job's status and stage")
	return cmd
}

func newRolloutActionCmd(g *globals, action, short string, reason bool) *cobra.Command {
	var why string
	cmd := &cobra.Command{
		Use:     action + " ID",
		Short:   short,
		Example: fmt.Sprintf("  outpost rollouts %s outpost-agent-1_4_0-3f9a", action),
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var body any
			if why != "" {
				body = map[string]string{"reason": why}
			}
			var r rolloutJSON
			raw, err := c.doJSON(cmd.Context(), http.MethodPost, pathRollouts+"/"+url.PathEscape(args[0])+"/"+action, nil, body, &r)
			if err != nil {
				return fmt.Errorf("%s rollout %q: %w", action, args[0], err)
			}
			if g.jsonOutput() {
				return writeJSON(g.stdout, raw)
			}
			fmt.Fprintf(g.stdout, "Rollout %s is %s.\n", r.ID, r.Status)
			return nil
		},
	}
	if reason {
		cmd.Flags().StringVar(&why, "reason", "", "why, recorded with the rollout")
	}
	return cmd
}

// printRollout prints a rollout for people.
func (g *globals) printRollout(r *rolloutJSON, devices bool) error {
	status := r.Status
	if r.Reason != "" {
		status += " — " + r.Reason
	}
	fields := [][2]string{
		{"Rollout", r.ID},
		{"Artifact", fmt.Sprintf("%s@%s (%s)", r.Artifact.Name, r.Artifact.Version, r.Artifact.Type)},
		{"Selector", orNone(formatSelector(r.Selector))},
		{"Status", status},
		{"Devices", fmt.Sprint(r.Devices)},
		{"Success threshold", fmt.Sprintf("%g%%", r.SuccessThreshold*100)},
		{"Soak", r.Soak},
	}
	if r.SoakUntil != nil && r.Status == "running" {
		fields = append(fields, [2]string{"Next wave after", r.SoakUntil.Local().Format(time.DateTime)})
	}
	if err := writeFields(g.stdout, fields); err != nil {
		return err
	}
	fmt.Fprintln(g.stdout)
	rows := make([][]string, 0, len(r.WaveStates))
	for i, w := range r.WaveStates {
		state := "not started"
		switch {
		case w.Started && w.Counts.Pending > 0:
			state = "running"
		case w.Started:
			state = "done"
		}
		upTo := ""
		if i < len(r.WaveBounds) {
			upTo = fmt.Sprintf("%d of %d", r.WaveBounds[i], r.Devices)
		}
		rows = append(rows, []string{fmt.Sprint(w.Wave), upTo, fmt.Sprint(w.Counts.Devices), state,
			fmt.Sprint(w.Counts.Succeeded), fmt.Sprint(w.Counts.Failed), fmt.Sprint(w.Counts.Pending), fmt.Sprint(w.Counts.Canceled)})
	}
	if err := writeTable(g.stdout, []string{"WAVE", "UP TO", "DEVICES", "STATE", "SUCCEEDED", "FAILED", "PENDING", "CANCELED"}, rows); err != nil {
		return err
	}
	if !devices {
		return nil
	}
	fmt.Fprintln(g.stdout)
	var drows [][]string
	for _, w := range r.WaveStates {
		for _, e := range w.Executions {
			d := e.StatusDetails
			stage := d["stage"]
			if p := d["progress"]; p != "" {
				stage += " " + p
			}
			drows = append(drows, []string{fmt.Sprint(w.Wave), e.Device, e.Status, stage, firstNonEmpty(d["reason"], d["message"])})
		}
	}
	return writeTable(g.stdout, []string{"WAVE", "DEVICE", "STATUS", "STAGE", "REASON"}, drows)
}

func orNone(s string) string {
	if s == "" {
		return "(all devices)"
	}
	return s
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
