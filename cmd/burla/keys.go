package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/burla-temporal/burla/auth"
	"github.com/burla-temporal/burla/job"
)

const keysUsage = `usage: burla keys <add|ls|revoke> [flags]

  add --tenant NAME [--role tenant|admin|control|node]   make a key; it is printed once
  ls                                                     list the keys (IDs, roles, tenants), never the keys
  revoke ID                                              remove the keys whose ID starts with ID

Every subcommand takes --file (default ~/.burla/keys.json) and --json. A server
started with --keys FILE reads the file again within a second of a change: a
revoked key's calls to Temporal are refused and its open store connections
closed. add and revoke lock FILE.lock beside the file while they change it, so
that several run at once lose no change.

On a terminal, add prints the key alone on stdout and ls a table. Otherwise (or
with --json) each prints JSON, one object per line:
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

func runKeys(args []string) error {
	if len(args) == 0 {
		return usageErrorf(keysUsage, "keys: give a command")
	}
	cmd, args := args[0], args[1:]
	home, _ := os.UserHomeDir()
	fs := flag.NewFlagSet("burla keys "+cmd, flag.ContinueOnError)
	file := fs.String("file", filepath.Join(home, ".burla", "keys.json"), "the keys file")
	asJSON := fs.Bool("json", false, "print JSON, one object per line, even on a terminal")
	var tenant, role *string
	switch cmd {
	case "add":
		tenant = fs.String("tenant", "", "the tenant the key's jobs belong to (role tenant)")
		role = fs.String("role", string(auth.RoleTenant), "tenant (starts and sees its own jobs), admin (sees every tenant's), control or node (the cluster's own components)")
	case "ls", "list", "revoke":
	case "-h", "-help", "--help", "help":
		fmt.Print(keysUsage)
		return nil
	default:
		return usageErrorf(keysUsage, "keys: unknown command %q", cmd)
	}
	pos, err := parseFlags(fs, keysUsage, args)
	if err != nil {
		return err
	}
	wantArgs := 0
	if cmd == "revoke" {
		wantArgs = 1
	}
	if len(pos) != wantArgs {
		if cmd == "revoke" {
			return usageErrorf(keysUsage, "keys revoke: give one key ID (from burla keys ls), got %q", pos)
		}
		return usageErrorf(keysUsage, "keys %s takes no arguments, got %q", cmd, pos)
	}
	jsonOut := *asJSON || !isTerminal(os.Stdout)
	enc := json.NewEncoder(os.Stdout)
	switch cmd {
	case "add":
		r := auth.Role(*role)
		switch {
		case r != auth.RoleTenant && r != auth.RoleAdmin && r != auth.RoleControl && r != auth.RoleNode:
			return usageErrorf(keysUsage, "keys add: unknown role %q (tenant, admin, control or node)", *role)
		case r == auth.RoleTenant && *tenant == "":
			return usageErrorf(keysUsage, "keys add: give --tenant NAME")
		case r == auth.RoleTenant && !job.ValidTenant(*tenant):
			return usageErrorf(keysUsage, "keys add: invalid tenant name %q: 1 to 32 lower-case letters, digits and dashes, starting with a letter", *tenant)
		}
		key, err := auth.Add(*file, r, *tenant)
		if err != nil {
			return fmt.Errorf("keys add: %w", err)
		}
		p, err := auth.ParseKey(key)
		if err != nil {
			return fmt.Errorf("keys add: %w", err)
		}
		if jsonOut {
			return enc.Encode(map[string]any{"id": p.ID, "key": key, "role": p.Role, "tenant": p.Tenant, "file": *file})
		}
		fmt.Fprintf(os.Stderr, "key %s added to %s; it is not shown again:\n", p.ID, *file)
		fmt.Println(key)
	case "ls", "list":
		entries, err := auth.List(*file)
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("keys ls: %w at %s (`burla keys add` makes one)", errNoKeysFile, *file)
		}
		if err != nil {
			return fmt.Errorf("keys ls: %w", err)
		}
		if jsonOut {
			for _, e := range entries {
				if err := enc.Encode(map[string]any{"id": e.SHA256[:12], "role": e.Role, "tenant": e.Tenant, "created": e.Created}); err != nil {
					return err
				}
			}
			return nil
		}
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tROLE\tTENANT\tCREATED")
		for _, e := range entries {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.SHA256[:12], e.Role, e.Tenant, e.Created.Format("2006-01-02 15:04"))
		}
		return tw.Flush()
	case "revoke":
		id := pos[0]
		if len(id) < 6 {
			return usageErrorf(keysUsage, "keys revoke: key ID %q: give at least 6 hex digits", id)
		}
		n, err := auth.Revoke(*file, id)
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("keys revoke: %w at %s", errNoKeysFile, *file)
		}
		if err != nil {
			return fmt.Errorf("keys revoke: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("keys revoke: %w %s in %s", errNoKey, id, *file)
		}
		if jsonOut {
			return enc.Encode(map[string]any{"revoked": n, "id": id, "file": *file})
		}
		fmt.Printf("revoked %d key(s)\n", n)
	}
	return nil
}
