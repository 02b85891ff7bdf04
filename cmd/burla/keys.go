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
)

const keysUsage = `usage: burla keys <add|ls|revoke> [flags]

  add --tenant NAME [--role tenant|admin|control|node]   make a key; it is printed once
  ls                                                     list the keys (IDs, roles, tenants), never the keys
  revoke ID                                              remove the keys whose ID starts with ID

Every subcommand takes --file (default ~/.burla/keys.json). A server started with
--keys FILE reads the file again within a second of a change.
`

func runKeys(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, keysUsage)
		os.Exit(2)
	}
	home, _ := os.UserHomeDir()
	fs := flag.NewFlagSet("burla keys "+args[0], flag.ExitOnError)
	file := fs.String("file", filepath.Join(home, ".burla", "keys.json"), "the keys file")
	switch args[0] {
	case "add":
		tenant := fs.String("tenant", "", "the tenant the key's jobs belong to (role tenant)")
		role := fs.String("role", string(auth.RoleTenant), "tenant (starts and sees its own jobs), admin (sees every tenant's), control or node (the cluster's own components)")
		fs.Parse(args[1:])
		if *tenant == "" && auth.Role(*role) == auth.RoleTenant {
			return errors.New("keys add: give --tenant NAME")
		}
		key, err := auth.Add(*file, auth.Role(*role), *tenant)
		if err != nil {
			return fmt.Errorf("keys add: %w", err)
		}
		fmt.Fprintf(os.Stderr, "key %s added to %s; it is not shown again:\n", auth.KeyID(key), *file)
		fmt.Println(key)
	case "ls":
		fs.Parse(args[1:])
		entries, err := auth.List(*file)
		if err != nil {
			return fmt.Errorf("keys ls: %w", err)
		}
		if !isTerminal(os.Stdout) {
			enc := json.NewEncoder(os.Stdout)
			for _, e := range entries {
				enc.Encode(map[string]any{"id": e.SHA256[:12], "role": e.Role, "tenant": e.Tenant, "created": e.Created})
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
		fs.Parse(args[1:])
		if fs.NArg() != 1 {
			return errors.New("keys revoke: give the key's ID (from burla keys ls)")
		}
		n, err := auth.Revoke(*file, fs.Arg(0))
		if err != nil {
			return fmt.Errorf("keys revoke: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("keys revoke: no key %s in %s", fs.Arg(0), *file)
		}
		fmt.Fprintf(os.Stderr, "revoked %d key(s)\n", n)
	default:
		fmt.Fprint(os.Stderr, keysUsage)
		os.Exit(2)
	}
	return nil
}
