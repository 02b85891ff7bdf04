package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/burla-temporal/burla/devcluster"
)

const certsUsage = `usage: burla certs make --dir DIR [--hosts NAME,...] [--client NAME]...

Makes what a cluster's Temporal and NATS need to serve TLS (burla temporal-server
and burla nats-server --tls-cert, burla dev --tls-dir, deploy/compose), in Go,
for machines and images that have no openssl:

  DIR/ca.pem, ca-key.pem          a CA, made only when DIR has none: clients trust
                                  ca.pem; keep ca-key.pem off the servers, it signs
  DIR/server.pem, server-key.pem  the servers' certificate, for --hosts (the names
                                  and addresses clients dial them at), localhost,
                                  127.0.0.1 and ::1; made anew each run, so run it
                                  again to add a host or to renew (every 3 years)
  DIR/NAME.pem, NAME-key.pem      for each --client, a client certificate, for
                                  servers started with --tls-client-ca DIR/ca.pem

Keys are written readable by their owner only.
`

// runCerts is `burla certs`.
func runCerts(args []string) error {
	if len(args) == 0 {
		return usageErrorf(certsUsage, "certs: give a command")
	}
	switch cmd := args[0]; cmd {
	case "make":
	case "-h", "-help", "--help", "help":
		fmt.Print(certsUsage)
		return nil
	default:
		return usageErrorf(certsUsage, "certs: unknown command %q", cmd)
	}
	fs := flag.NewFlagSet("burla certs make", flag.ContinueOnError)
	dir := fs.String("dir", "", "the directory to write to (made if missing)")
	var hosts, clients []string
	fs.Func("hosts", "the names and IP addresses clients reach the servers at, comma-separated (repeatable)", func(v string) error {
		for h := range strings.SplitSeq(v, ",") {
			if h = strings.TrimSpace(h); h != "" {
				hosts = append(hosts, h)
			}
		}
		return nil
	})
	repeated(fs, "client", "make a client certificate NAME.pem (repeatable)", &clients)
	pos, err := parseFlags(fs, certsUsage, args[1:])
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return usageErrorf(certsUsage, "certs make takes no arguments, got %q", pos)
	case *dir == "":
		return usageErrorf(certsUsage, "certs make: give --dir DIR")
	}
	if err := devcluster.MakeTLS(*dir, hosts, clients); err != nil {
		return fmt.Errorf("certs make: %w", err)
	}
	abs, _ := filepath.Abs(*dir)
	fmt.Fprintf(os.Stderr, "burla certs: %s: CA %s (keep %s safe), servers' certificate %s for %s\n", abs,
		devcluster.TLSCA, devcluster.TLSCAKey, devcluster.TLSServer, strings.Join(append([]string{"localhost", "127.0.0.1", "::1"}, hosts...), ", "))
	return nil
}
