package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// maxPasswordInput bounds what --password-stdin reads.
const maxPasswordInput = 4 << 10

func newLoginCmd(g *globals) *cobra.Command {
	var user string
	var passwordStdin bool
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Log in to a hub and save the token",
		Long: `login exchanges a user name and password for an API token (valid 12 hours) and saves
the hub URL and token in login.json under $` + envConfigDir + ` (default: the user config
directory/outpost), readable only by you. Later commands use the saved login unless
--hub/--token or ` + envHub + `/` + envToken + ` say otherwise; the saved token is only sent to the
hub that issued it.

The password is read from standard input with --password-stdin (a trailing newline is
removed), so it never appears in the process list or shell history.`,
		Example: `  outpost login --hub http://127.0.0.1:8080 --user admin --password-stdin < ./hub-data/admin-password
  echo "$ADMIN_PASSWORD" | outpost login --hub https://hub.example.com --password-stdin`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !passwordStdin {
				return errors.New("no password given: pipe it in with --password-stdin (interactive prompts are not supported)")
			}
			if user == "" {
				return errors.New("--user is empty")
			}
			password, err := readPassword(cmd.InOrStdin())
			if err != nil {
				return err
			}
			hub, _, err := g.resolveHub(cmd)
			if err != nil {
				return err
			}
			var resp struct {
				Token     string  `json:"token"`
				ExpiresAt apiTime `json:"expires_at"`
			}
			c := newClient(hub, "")
			req := map[string]string{"username": user, "password": password}
			if _, err := c.doJSON(cmd.Context(), http.MethodPost, pathLogin, nil, req, &resp); err != nil {
				var ae *apiError
				if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
					// The generic 401 hint says to log in, which is what failed.
					return fmt.Errorf("logging in to %s as %s: hub refused: %s (%s)", hub, user, ae.Message, ae.Code)
				}
				return fmt.Errorf("logging in to %s: %w", hub, err)
			}
			if resp.Token == "" {
				return fmt.Errorf("logging in to %s: hub returned no token", hub)
			}
			s := &savedLogin{Hub: hub, User: user, Token: resp.Token, ExpiresAt: resp.ExpiresAt.Time}
			path, err := saveLogin(s)
			if err != nil {
				return err
			}
			if g.jsonOutput() {
				return writeJSONValue(g.stdout, map[string]any{
					"hub": hub, "user": user, "expires_at": s.ExpiresAt, "saved_to": path,
				})
			}
			expiry := "unknown"
			if !s.ExpiresAt.IsZero() {
				expiry = s.ExpiresAt.Format(time.RFC3339)
			}
			_, err = fmt.Fprintf(g.stdout, "Logged in to %s as %s (token expires %s)\n", hub, user, expiry)
			return err
		},
	}
	cmd.Flags().StringVarP(&user, "user", "u", "admin", "user name")
	cmd.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from standard input")
	return cmd
}

// readPassword reads a password from r and removes one trailing newline.
func readPassword(r io.Reader) (string, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxPasswordInput+1))
	if err != nil {
		return "", fmt.Errorf("reading password from stdin: %w", err)
	}
	if len(data) > maxPasswordInput {
		return "", fmt.Errorf("reading password from stdin: longer than %d bytes", maxPasswordInput)
	}
	data = bytes.TrimSuffix(data, []byte("\n"))
	data = bytes.TrimSuffix(data, []byte("\r"))
	if len(data) == 0 {
		return "", errors.New("reading password from stdin: empty password")
	}
	return string(data), nil
}

// apiTime is a timestamp in an API response. It accepts RFC 3339 strings and
// treats null or "" as the zero time, so a missing value reads as "never"
// instead of failing the whole command.
type apiTime struct{ time.Time }

func (t *apiTime) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "null" || s == `""` {
		t.Time = time.Time{}
		return nil
	}
	return t.Time.UnmarshalJSON(b)
}
