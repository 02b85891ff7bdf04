package cli

import (
	"fmt"
	goruntime "runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/burla-temporal/burla/wire"
)

const versionUsage = `usage: burla version [-o json|table]

Prints burla's version, the protocol version its workers and programs speak
(package wire), and the Go it was built with: a line of text on a terminal (or
with -o table), and otherwise (or with -o json, --json) one JSON object:
  {"version":…,"protocol":N,"go":…}
`

// versionCommand is burla version.
func (m *Main) versionCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use: "version", Short: "print the version", Long: versionUsage,
		Args: noArgs(""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, err := m.wantJSON(cmd)
			if err != nil {
				return err
			}
			v := version
			if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
				v = bi.Main.Version // go install …@vX.Y.Z
			}
			if asJSON {
				return printJSON(m.Stdout, struct {
					Version  string `json:"version"`
					Protocol int    `json:"protocol"`
					Go       string `json:"go"`
				}{v, wire.Version, goruntime.Version()})
			}
			_, err = fmt.Fprintf(m.Stdout, "burla %s (protocol %d, %s)\n", v, wire.Version, goruntime.Version())
			return err
		},
	}
	addOutputFlags(cmd.Flags())
	return cmd
}
