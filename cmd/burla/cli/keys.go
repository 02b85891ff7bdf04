package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/burla-temporal/burla/auth"
	"github.com/burla-temporal/burla/job"
)

const keysUsage = `usage: burla keys <add|ls|revoke> [flags]

  add --tenant NAME [--role tenant|admin|control|node]   make a key; it is printed once
  ls                                                     list the keys (IDs, roles, tenants), never the keys
  revoke ID                                              remove the keys whose ID starts with ID

Every subcommand takes --file (default ~/.burla/keys.json) and -o json|table
(--json: -o json). A server started with --keys FILE reads the file again within
a second of a change: a revoked key's calls to Temporal are refused and its open
store connections closed. add and revoke lock FILE.lock beside the file while
they change it, so that several run at once lose no change.

On a terminal (or with -o table), add prints the key alone on stdout and ls a
table. Otherwise (or with -o json) each prints JSON, one object per line:
  add     {"id":…,"key":"bk_…","role":…,"tenant":…,"file":…}
  ls      {"id":…,"role":…,"tenant":…,"created":…} for each key
  revoke  {"revoked":N,"id":…,"file":…}

Exit status: 0 success, 1 error, 2 usage, 4 no such key (revoke) or no keys file
(ls, revoke).
`

// errNoKey and errNoKeysFile exit with exitNotFound.
var (
	errNoKey      = errors.New("no such key")
	errNoKeysFile = errors.New("no keys file")
)

// keysCommand is burla keys.
func (m *Main) keysCommand() *cobra.Command {
	keys := &cobra.Command{Use: "keys", Short: "add, list and revoke API keys", Long: keysUsage}

	var tenant, role string
	add := m.keysSubcommand("add", "make a key; it is printed once", noArgs(""), func(cmd *cobra.Command, file string, asJSON bool, _ []string) error {
		r := auth.Role(role)
		switch {
		case r != auth.RoleTenant && r != auth.RoleAdmin && r != auth.RoleControl && r != auth.RoleNode:
			return usageErrorf("keys add: unknown role %q (tenant, admin, control or node)", role)
		case r == auth.RoleTenant && tenant == "":
			return usageErrorf("keys add: give --tenant NAME")
		case r == auth.RoleTenant && !job.ValidTenant(tenant):
			return usageErrorf("keys add: invalid tenant name %q: 1 to 32 lower-case letters, digits and dashes, starting with a letter", tenant)
		}
		key, err := auth.Add(file, r, tenant)
		if err != nil {
			return fmt.Errorf("keys add: %w", err)
		}
		p, err := auth.ParseKey(key)
		if err != nil {
			return fmt.Errorf("keys add: %w", err)
		}
		if asJSON {
			return printJSON(m.Stdout, map[string]any{"id": p.ID, "key": key, "role": p.Role, "tenant": p.Tenant, "file": file})
		}
		fmt.Fprintf(m.Stderr, "key %s added to %s; it is not shown again:\n", p.ID, file)
		_, err = fmt.Fprintln(m.Stdout, key)
		return err
	})
	add.Flags().StringVar(&tenant, "tenant", "", "the tenant the key's jobs belong to (role tenant)")
	add.Flags().StringVar(&role, "role", string(auth.RoleTenant), "tenant (starts and sees its own jobs), admin (sees every tenant's), control or node (the cluster's own components)")

	ls := m.keysSubcommand("ls", "list the keys (IDs, roles, tenants), never the keys", noArgs(""), func(_ *cobra.Command, file string, asJSON bool, _ []string) error {
		entries, err := auth.List(file)
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("keys ls: %w at %s (`burla keys add` makes one)", errNoKeysFile, file)
		}
		if err != nil {
			return fmt.Errorf("keys ls: %w", err)
		}
		if asJSON {
			for _, e := range entries {
				if err := printJSON(m.Stdout, map[string]any{"id": e.SHA256[:12], "role": e.Role, "tenant": e.Tenant, "created": e.Created}); err != nil {
					return err
				}
			}
			return nil
		}
		tw := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tROLE\tTENANT\tCREATED")
		for _, e := range entries {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.SHA256[:12], e.Role, e.Tenant, e.Created.Format("2006-01-02 15:04"))
		}
		return tw.Flush()
	})
	ls.Aliases = []string{"list"}

	revoke := m.keysSubcommand("revoke ID", "remove the keys whose ID starts with ID", oneArg("key ID (from burla keys ls)"), func(_ *cobra.Command, file string, asJSON bool, args []string) error {
		id := args[0]
		if len(id) < 6 {
			return usageErrorf("keys revoke: key ID %q: give at least 6 hex digits", id)
		}
		n, err := auth.Revoke(file, id)
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("keys revoke: %w at %s", errNoKeysFile, file)
		}
		if err != nil {
			return fmt.Errorf("keys revoke: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("keys revoke: %w %s in %s", errNoKey, id, file)
		}
		if asJSON {
			return printJSON(m.Stdout, map[string]any{"revoked": n, "id": id, "file": file})
		}
		_, err = fmt.Fprintf(m.Stdout, "revoked %d key(s)\n", n)
		return err
	})

	keys.AddCommand(add, ls, revoke)
	return keys
}

// keysSubcommand is a burla keys command, with the flags they all have: run runs
// it on the keys file --file names, printing JSON if asJSON.
func (m *Main) keysSubcommand(use, short string, args cobra.PositionalArgs, run func(cmd *cobra.Command, file string, asJSON bool, args []string) error) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use: use, Short: short, Long: keysUsage, Args: args,
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := m.wantJSON(cmd)
			if err != nil {
				return err
			}
			return run(cmd, file, asJSON, args)
		},
	}
	home, _ := os.UserHomeDir()
	cmd.Flags().StringVar(&file, "file", filepath.Join(home, ".burla", "keys.json"), "the keys file")
	addOutputFlags(cmd.Flags())
	return cmd
}
