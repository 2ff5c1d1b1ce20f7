package cli

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/ota"
	"github.com/spf13/cobra"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Paths of the TUF key endpoints.
const (
	pathOnlineKeys = "/api/v1/tuf/online-keys"
	pathTUFRoot    = "/api/v1/tuf/root"
	pathTUFStatus  = "/api/v1/tuf/status"
	pathRootJSON   = "/tuf/metadata/root.json"

	defaultRootKeyFile = "./outpost-root.key"
	defaultRootExpiry  = "365d"
)

func newKeysCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Set up and rotate the keys that sign OTA artifacts (TUF)",
		Long: `keys manages the signing keys of the hub's update repository (The Update Framework).

The root key is made and kept on this machine and never sent to the hub: it signs the
root metadata, which names the keys of the other roles. The hub holds the online keys
(targets, snapshot, timestamp) and signs with them whenever an artifact is published.
Keep the root key file offline (e.g. on a removable disk) between ceremonies.`,
		Example: `  outpost keys init --root-key ./outpost-root.key
  outpost keys show
  outpost keys rotate --role targets --root-key ./outpost-root.key
  outpost keys rotate --role root --root-key ./outpost-root.key --new-root-key ./outpost-root-2.key`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newKeysInitCmd(g), newKeysRotateCmd(g), newKeysShowCmd(g))
	return cmd
}

// onlineKeysResponse is the body of POST /api/v1/tuf/online-keys.
type onlineKeysResponse struct {
	Keys []ota.OnlineKey `json:"keys"`
}

func (r onlineKeysResponse) byRole() (map[string]*metadata.Key, error) {
	out := map[string]*metadata.Key{}
	for _, k := range r.Keys {
		if k.Key == nil || !ota.IsOnlineRole(k.Role) {
			continue
		}
		out[k.Role] = k.Key
	}
	for _, role := range ota.OnlineRoles {
		if out[role] == nil {
			return nil, fmt.Errorf("the hub returned no %s key", role)
		}
	}
	return out, nil
}

func newKeysInitCmd(g *globals) *cobra.Command {
	var rootKeyFile, expires string
	var force bool
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the root key here and the online keys on the hub, and sign root v1",
		Long: `init runs the key ceremony once per hub:

  1. the hub generates its online keys (targets, snapshot, timestamp) and returns their public keys;
  2. this command generates the root key and writes it to --root-key (mode 0600);
  3. it signs root metadata version 1 with the root key and uploads it;
  4. the hub checks it and signs empty targets, snapshot and timestamp metadata.

The root key never leaves this machine. Move it offline afterwards: you need it only
to rotate keys ("outpost keys rotate") or to renew root before it expires.`,
		Example: `  outpost keys init
  outpost keys init --root-key /media/usb/outpost-root.key --expires 730d`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lifetime, err := parseLifetime(expires)
			if err != nil {
				return fmt.Errorf("--expires: %w", err)
			}
			if !force {
				if _, err := os.Stat(rootKeyFile); err == nil {
					return fmt.Errorf("root key file %s exists; refusing to overwrite it (use --force to replace it, or another --root-key)", rootKeyFile)
				}
			}
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var st ota.Status
			if _, err := c.doJSON(ctx, http.MethodGet, pathTUFStatus, nil, nil, &st); err != nil {
				return fmt.Errorf("reading key status: %w", err)
			}
			if st.Initialised {
				return fmt.Errorf(`keys are already initialised on %s (root version %d); use "outpost keys rotate" to change them`, c.base, st.Roles[metadata.ROOT].Version)
			}
			var ok onlineKeysResponse
			if _, err := c.doJSON(ctx, http.MethodPost, pathOnlineKeys, nil, nil, &ok); err != nil {
				return fmt.Errorf("creating the hub's online keys: %w", err)
			}
			online, err := ok.byRole()
			if err != nil {
				return err
			}
			rootPriv, err := ota.GenerateKey()
			if err != nil {
				return err
			}
			rootPub, rootID, err := ota.PublicKey(rootPriv)
			if err != nil {
				return err
			}
			root := metadata.Root(g.now().Add(lifetime).UTC().Truncate(time.Second))
			if err := root.Signed.AddKey(rootPub, metadata.ROOT); err != nil {
				return err
			}
			for role, k := range online {
				if err := root.Signed.AddKey(k, role); err != nil {
					return err
				}
			}
			if err := writeKeyFile(rootKeyFile, rootPriv, force); err != nil {
				return err
			}
			if err := uploadRoot(ctx, c, root, rootPriv); err != nil {
				return discardKeyIfRefused(err, rootKeyFile)
			}
			fmt.Fprintf(g.stdout, "Initialised TUF keys on %s.\n", c.base)
			fmt.Fprintf(g.stdout, "  root key      %s  written to %s (keep this file OFFLINE; the hub never sees it)\n", short(rootID), rootKeyFile)
			for _, role := range ota.OnlineRoles {
				id, _ := online[role].ID()
				fmt.Fprintf(g.stdout, "  %-13s %s  held by the hub\n", role+" key", short(id))
			}
			fmt.Fprintf(g.stdout, "Root version 1 expires %s; renew it before then with \"outpost keys rotate\".\n", root.Signed.Expires.Format(time.RFC3339))
			fmt.Fprintln(g.stdout, `Next: "outpost artifacts publish FILE --name N --version V --type agent|file|service --platform linux/arm64".`)
			return nil
		},
	}
	cmd.Flags().StringVar(&rootKeyFile, "root-key", defaultRootKeyFile, "file to write the new root private key to (mode 0600)")
	cmd.Flags().StringVar(&expires, "expires", defaultRootExpiry, "lifetime of root metadata, e.g. 365d or 8760h")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite an existing --root-key file")
	return cmd
}

func newKeysRotateCmd(g *globals) *cobra.Command {
	var role, rootKeyFile, newRootKeyFile, expires string
	cmd := &cobra.Command{
		Use:   "rotate --role targets|snapshot|timestamp|root --root-key FILE",
		Short: "Replace one role's key and sign the next root version",
		Long: `rotate replaces the key of one role and signs root metadata version N+1 with the root key.

For targets, snapshot or timestamp the hub generates the new key (it keeps using the old one
until the new root is accepted). For root, this command generates a new root key, writes it
to --new-root-key, and signs root N+1 with the old AND the new root key, so devices that
trust the old root follow the chain. After the new root, the hub re-signs targets, snapshot
and timestamp. Rotating also renews root's expiry (--expires).`,
		Example: `  outpost keys rotate --role targets --root-key ./outpost-root.key
  outpost keys rotate --role timestamp --root-key ./outpost-root.key --expires 730d
  outpost keys rotate --role root --root-key ./outpost-root.key --new-root-key ./outpost-root-2.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if role != metadata.ROOT && !ota.IsOnlineRole(role) {
				return fmt.Errorf("--role %q: use targets, snapshot, timestamp or root", role)
			}
			lifetime, err := parseLifetime(expires)
			if err != nil {
				return fmt.Errorf("--expires: %w", err)
			}
			rootPriv, err := readKeyFile(rootKeyFile)
			if err != nil {
				return err
			}
			if role == metadata.ROOT {
				if newRootKeyFile == "" {
					newRootKeyFile = nextKeyFile(rootKeyFile)
				}
				if _, err := os.Stat(newRootKeyFile); err == nil {
					return fmt.Errorf("new root key file %s exists; refusing to overwrite it (choose another --new-root-key)", newRootKeyFile)
				}
			}
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			raw, err := c.do(ctx, http.MethodGet, pathRootJSON, nil, nil)
			var ae *apiError
			if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
				return errors.New(`keys are not initialised on this hub: run "outpost keys init" first`)
			}
			if err != nil {
				return fmt.Errorf("reading the current root: %w", err)
			}
			root, err := metadata.Root().FromBytes(raw)
			if err != nil {
				return fmt.Errorf("parsing the hub's root.json: %w", err)
			}
			_, rootID, err := ota.PublicKey(rootPriv)
			if err != nil {
				return err
			}
			if !contains(root.Signed.Roles[metadata.ROOT].KeyIDs, rootID) {
				return fmt.Errorf("%s holds root key %s, which root version %d does not list (it lists %s); use the current root key",
					rootKeyFile, short(rootID), root.Signed.Version, strings.Join(root.Signed.Roles[metadata.ROOT].KeyIDs, ", "))
			}
			signers := []ed25519.PrivateKey{rootPriv}
			var newKey *metadata.Key
			if role == metadata.ROOT {
				newPriv, err := ota.GenerateKey()
				if err != nil {
					return err
				}
				if newKey, _, err = ota.PublicKey(newPriv); err != nil {
					return err
				}
				signers = append(signers, newPriv)
				if err := writeKeyFile(newRootKeyFile, newPriv, false); err != nil {
					return err
				}
			} else {
				var ok onlineKeysResponse
				if _, err := c.doJSON(ctx, http.MethodPost, pathOnlineKeys, url.Values{"rotate": {role}}, nil, &ok); err != nil {
					return fmt.Errorf("creating a new %s key on the hub: %w", role, err)
				}
				online, err := ok.byRole()
				if err != nil {
					return err
				}
				newKey = online[role]
			}
			oldIDs := append([]string(nil), root.Signed.Roles[role].KeyIDs...)
			for _, id := range oldIDs {
				if err := root.Signed.RevokeKey(id, role); err != nil {
					return err
				}
			}
			if err := root.Signed.AddKey(newKey, role); err != nil {
				return err
			}
			newID, _ := newKey.ID()
			root.Signed.Version++
			root.Signed.Expires = g.now().Add(lifetime).UTC().Truncate(time.Second)
			if err := uploadRoot(ctx, c, root, signers...); err != nil {
				if role == metadata.ROOT {
					return discardKeyIfRefused(err, newRootKeyFile)
				}
				return err
			}
			fmt.Fprintf(g.stdout, "Rotated the %s key on %s: %s → %s.\n", role, c.base, shortList(oldIDs), short(newID))
			fmt.Fprintf(g.stdout, "Root version %d (expires %s) is signed and accepted; the hub re-signed targets, snapshot and timestamp.\n",
				root.Signed.Version, root.Signed.Expires.Format(time.RFC3339))
			if role == metadata.ROOT {
				fmt.Fprintf(g.stdout, "The new root key is in %s: keep it OFFLINE. The old key %s is no longer trusted for new roots; destroy it once devices have updated.\n", newRootKeyFile, rootKeyFile)
			} else {
				fmt.Fprintf(g.stdout, "Keep %s offline again.\n", rootKeyFile)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&role, "role", "", "role whose key to replace: targets, snapshot, timestamp or root (required)")
	cmd.Flags().StringVar(&rootKeyFile, "root-key", defaultRootKeyFile, "the current root private key")
	cmd.Flags().StringVar(&newRootKeyFile, "new-root-key", "", "with --role root: file to write the new root key to (default: --root-key with the next version number)")
	cmd.Flags().StringVar(&expires, "expires", defaultRootExpiry, "lifetime of the new root metadata, e.g. 365d or 8760h")
	cmd.MarkFlagRequired("role")
	return cmd
}

// tufStatus is the body of GET /api/v1/tuf/status.
type tufStatus struct {
	Initialised bool `json:"initialised"`
	Roles       map[string]struct {
		KeyIDs       []string `json:"keyids"`
		Threshold    int      `json:"threshold"`
		Version      int64    `json:"version"`
		Expires      apiTime  `json:"expires"`
		PendingKeyID string   `json:"pending_keyid"`
	} `json:"roles"`
	Artifacts int `json:"artifacts"`
}

func newKeysShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show",
		Short: "Show the roles, key ids, metadata versions and expiries",
		Long: `show prints, for each TUF role, the ids of its keys, its signature threshold, the version
of its newest metadata and when that expires. A pending key is one made by "keys rotate"
that no accepted root lists yet.`,
		Example: `  outpost keys show
  outpost keys show -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var st tufStatus
			raw, err := c.doJSON(cmd.Context(), http.MethodGet, pathTUFStatus, nil, nil, &st)
			if err != nil {
				return fmt.Errorf("reading key status: %w", err)
			}
			if g.jsonOutput() {
				return writeJSON(g.stdout, raw)
			}
			if !st.Initialised {
				fmt.Fprintf(g.stdout, "Keys are not initialised on %s: run \"outpost keys init\".\n", c.base)
				return nil
			}
			var rows [][]string
			for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
				r := st.Roles[role]
				where := "hub (online)"
				if role == metadata.ROOT {
					where = "offline"
				}
				pending := "-"
				if r.PendingKeyID != "" {
					pending = short(r.PendingKeyID)
				}
				rows = append(rows, []string{role, strings.Join(r.KeyIDs, ","), strconv.Itoa(r.Threshold), where,
					strconv.FormatInt(r.Version, 10), r.Expires.UTC().Format(time.RFC3339) + " (" + untilTime(r.Expires.Time, g.now()) + ")", pending})
			}
			if err := writeTable(g.stdout, []string{"ROLE", "KEY IDS", "THRESHOLD", "KEY", "VERSION", "EXPIRES", "PENDING KEY"}, rows); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%d artifact(s) published.\n", st.Artifacts)
			return nil
		},
	}
}

// uploadRoot signs root with signers and uploads it.
func uploadRoot(ctx context.Context, c *client, root *metadata.Metadata[metadata.RootType], signers ...ed25519.PrivateKey) error {
	root.ClearSignatures()
	for _, k := range signers {
		s, err := ota.Signer(k)
		if err != nil {
			return err
		}
		if _, err := root.Sign(s); err != nil {
			return fmt.Errorf("signing root: %w", err)
		}
	}
	data, err := root.ToBytes(true)
	if err != nil {
		return fmt.Errorf("encoding root: %w", err)
	}
	if _, err := c.do(ctx, http.MethodPut, pathTUFRoot, nil, json.RawMessage(data)); err != nil {
		return fmt.Errorf("uploading root version %d: %w", root.Signed.Version, err)
	}
	return nil
}

// discardKeyIfRefused removes a key file written for a root the hub
// refused (the key protects nothing). After any other failure the hub may
// have accepted the root, so the key is kept and the operator told.
func discardKeyIfRefused(err error, keyFile string) error {
	var ae *apiError
	if errors.As(err, &ae) && ae.Status >= 400 && ae.Status < 500 {
		os.Remove(keyFile)
		return err
	}
	return fmt.Errorf("%w; the hub may or may not have accepted the new root: kept the key in %s, check with \"outpost keys show\"", err, keyFile)
}

// writeKeyFile writes k to path with mode 0600; it refuses to replace an
// existing file unless force.
func writeKeyFile(path string, k ed25519.PrivateKey, force bool) error {
	data, err := ota.MarshalPrivateKey(k)
	if err != nil {
		return err
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("key file %s exists; refusing to overwrite it", path)
	}
	if err != nil {
		return fmt.Errorf("writing key file: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("writing key file %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing key file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("writing key file %s: %w", path, err)
	}
	return f.Close()
}

// readKeyFile reads a root key written by writeKeyFile.
func readKeyFile(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("root key file %s does not exist: pass the file \"outpost keys init\" wrote with --root-key", path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading root key: %w", err)
	}
	k, err := ota.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("root key file %s: %w", path, err)
	}
	return k, nil
}

// nextKeyFile derives a file name for a new root key from the old one:
// outpost-root.key → outpost-root-2.key → outpost-root-3.key.
func nextKeyFile(old string) string {
	dir, base := filepath.Split(old)
	ext := filepath.Ext(base)
	stem := strings.TrimSuffix(base, ext)
	n := 2
	if i := strings.LastIndex(stem, "-"); i >= 0 {
		if v, err := strconv.Atoi(stem[i+1:]); err == nil && v >= 1 {
			stem, n = stem[:i], v+1
		}
	}
	return filepath.Join(dir, fmt.Sprintf("%s-%d%s", stem, n, ext))
}

// parseLifetime parses "365d" or a Go duration such as "8760h".
func parseLifetime(s string) (time.Duration, error) {
	var d time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil {
			return 0, fmt.Errorf("%q: use days like 365d or a duration like 8760h", s)
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("%q: use days like 365d or a duration like 8760h", s)
		}
	}
	if d < 24*time.Hour || d > 10*365*24*time.Hour {
		return 0, fmt.Errorf("%q: must be between 1 day and 10 years", s)
	}
	return d, nil
}

// untilTime renders how long until t: "in 23h", "in 89d", "EXPIRED".
func untilTime(t, now time.Time) string {
	d := t.Sub(now)
	switch {
	case t.IsZero():
		return "-"
	case d <= 0:
		return "EXPIRED"
	case d < time.Hour:
		return fmt.Sprintf("in %dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("in %dh", int(d/time.Hour))
	default:
		return fmt.Sprintf("in %dd", int(d/(24*time.Hour)))
	}
}

// short abbreviates a key id for tables and messages.
func short(id string) string {
	if len(id) > 16 {
		return id[:16]
	}
	return id
}

func shortList(ids []string) string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = short(id)
	}
	return strings.Join(out, ",")
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
