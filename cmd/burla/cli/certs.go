package cli

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/burla-temporal/burla/tlsdir"
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

// certsCommand is burla certs.
func (m *Main) certsCommand() *cobra.Command {
	certs := &cobra.Command{Use: "certs", Short: "make the certificates Temporal and NATS serve TLS with", Long: certsUsage}
	var dir string
	var hosts, clients []string
	mk := &cobra.Command{
		Use: "make", Short: "make a CA and the servers' certificate for Temporal's and NATS's TLS", Long: certsUsage,
		Args: noArgs(""),
		RunE: func(*cobra.Command, []string) error {
			if dir == "" {
				return usageErrorf("certs make: give --dir DIR")
			}
			if err := tlsdir.Make(dir, hosts, clients); err != nil {
				return fmt.Errorf("certs make: %w", err)
			}
			abs, _ := filepath.Abs(dir)
			fmt.Fprintf(m.Stderr, "burla certs: %s: CA %s (keep %s safe), servers' certificate %s for %s\n", abs,
				tlsdir.CA, tlsdir.CAKey, tlsdir.Server, strings.Join(append([]string{"localhost", "127.0.0.1", "::1"}, hosts...), ", "))
			return nil
		},
	}
	mk.Flags().StringVar(&dir, "dir", "", "the directory to write to (made if missing)")
	listFlag(mk.Flags(), "hosts", "the names and IP addresses clients reach the servers at, comma-separated (repeatable)", &hosts)
	mk.Flags().StringArrayVar(&clients, "client", nil, "make a client certificate NAME.pem (repeatable)")
	certs.AddCommand(mk)
	return certs
}
