// Package cli is the burla command: its cobra command tree, its flags, and the
// one place where an error becomes an exit status and a message (Main.Run).
// cmd/burla's main runs it; tests run it in process, as the binary would.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"

	"github.com/spf13/cobra"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"golang.org/x/term"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/status"
	"github.com/burla-temporal/burla/temporalconn"
)

const usage = `usage: burla <command> [flags]

commands:
  dev               run a local cluster (embedded Temporal and NATS, node agents as processes)
  cluster           up, down, status, watch, set-standby, restart: manage a cluster's standby nodes
  jobs              ls, show, logs, attach, cancel: the cluster's jobs
  keys              add, ls, revoke: API keys of a cluster that asks for them
  control-plane     run the control plane against a Temporal and a store elsewhere (e.g. on Google Cloud)
  temporal-server   run the embedded Temporal server alone (its SQLite file under --data-dir)
  nats-server       run the embedded NATS JetStream server alone (its streams under --data-dir)
  certs             make: a CA and the servers' certificate for Temporal's and NATS's TLS
  node-agent        run one node's agent
  container-worker  run one container worker (its node agent starts it)
  version           print the version (-o json: {"version":…,"protocol":N,"go":…})
  completion        print a shell completion script: bash, zsh, fish or powershell
  help              help about a command: burla help cluster up

Run 'burla help <command>' or 'burla <command> -h' for a command's flags. Flags
take two dashes (--nodes 2, --nodes=2); a single dash (-nodes 2), as Go's flag
package took it, is still read as two.

The management commands (cluster, jobs, keys, version) print a table or text on
a terminal, and JSON when stdout is not a terminal or -o json (--json) is given;
-o table prints a table even when stdout is not a terminal. JSON is one object
per line, a list as one object per line, a watch as one object per change.

exit status (every command):
  0  success
  1  error
  2  usage: an unknown command, flag or argument
  3  jobs attach: the job did not succeed
  4  no such thing: job, cluster, key or keys file
  5  refused: the cluster does not know the API key, or the key may not do this
     (another tenant's job; a tenant's key on the cluster's own commands)
  6  unreachable: nothing answered at the Temporal address
Errors go to stderr; with JSON output the last line there is {"error":"…","code":N}.
`

// Exit statuses, the same for every command, so that scripts can tell failures
// apart (usage and README.md list them); exitCode picks one for an error.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitJobFailed   = 3 // burla jobs attach: the job did not succeed
	exitNotFound    = 4 // no such job, cluster, key or keys file
	exitDenied      = 5 // the cluster refused the API key, or the key may not do this
	exitUnreachable = 6 // nothing answered at the Temporal address
)

// errUnreachable marks a failure to reach a cluster at all; it exits with
// exitUnreachable.
var errUnreachable = errors.New("no cluster answered")

// errJobFailed marks an attached job that did not succeed; it exits with
// exitJobFailed.
var errJobFailed = errors.New("the job did not succeed")

// usageError is a command line burla cannot make sense of; it exits with
// exitUsage, after the command's usage.
type usageError struct {
	err error
	// flags is set for an error of the flag parser, which stops at the flag it
	// cannot parse.
	flags bool
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usageErrorf is a usageError whose message is formatted.
func usageErrorf(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// exitCode is the exit status for err (see the const block above).
func exitCode(err error) int {
	var ue *usageError
	var denied *serviceerror.PermissionDenied
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	case errors.Is(err, errJobFailed):
		return exitJobFailed
	case errors.Is(err, status.ErrDenied), burla.IsKind(err, burla.KindUnauthorized),
		errors.As(err, &denied), grpcstatus.Code(err) == codes.Unauthenticated:
		return exitDenied
	case errors.Is(err, errUnreachable), burla.IsKind(err, burla.KindNoCluster):
		return exitUnreachable
	case errors.Is(err, status.ErrNoJob), errors.Is(err, errNoCluster), errors.Is(err, errNoKey), errors.Is(err, errNoKeysFile):
		return exitNotFound
	}
	return exitError
}

// version is set at build time with -ldflags
// "-X github.com/burla-temporal/burla/cmd/burla/cli.version=...".
var version = "dev"

// Main is one run of the burla command: its arguments and the files it reads
// and prints to. Tests run it in process.
type Main struct {
	Args   []string // the command line after the program's name
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer

	// terminal reports whether Stdout is a terminal, for tests; if nil, it is
	// when Stdout is an *os.File on one.
	terminal func() bool
}

// Run runs the command m.Args names and returns its exit status. It never exits
// the process.
func (m *Main) Run(ctx context.Context) int {
	root := m.command()
	args := longFlags(root, m.Args)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	return m.exit(cmd, err, args)
}

// exit prints err, which cmd returned when run with args, and returns its exit
// status. The error goes to stderr as a line of text, a usage error's followed by
// cmd's usage, then, for a command whose output is JSON, as
// {"error":…,"code":N}, so that a script reads the last line of stderr.
func (m *Main) exit(cmd *cobra.Command, err error, args []string) int {
	code := exitCode(err)
	// The SDK's errors say "burla: " already.
	msg := strings.TrimPrefix(err.Error(), "burla: ")
	fmt.Fprintf(m.Stderr, "burla: %s\n", msg)
	if code == exitUsage {
		fmt.Fprint(m.Stderr, "\n"+cmd.UsageString())
	}
	if m.errorsAsJSON(cmd, err, args) {
		json.NewEncoder(m.Stderr).Encode(struct {
			Error string `json:"error"`
			Code  int    `json:"code"`
		}{msg, code})
	}
	return code
}

// command is burla's command tree.
func (m *Main) command() *cobra.Command {
	root := &cobra.Command{
		Use:   "burla",
		Short: "Run a Burla cluster and its parts",
		Long:  usage,
		// burla alone, or with a word that is none of its commands, is a usage
		// error (groupRun, set below).
		SilenceErrors: true, // Run prints errors, in one place: exit
		SilenceUsage:  true,
	}
	root.SetIn(m.Stdin)
	root.SetOut(m.Stdout)
	root.SetErr(m.Stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &usageError{err: fmt.Errorf("%s%w", where(cmd), err), flags: true}
	})
	root.AddCommand(m.devCommand(), m.clusterCommand(), m.jobsCommand(), m.keysCommand(),
		m.controlPlaneCommand(), m.temporalServerCommand(), m.natsServerCommand(), m.certsCommand(),
		m.nodeAgentCommand(), m.containerWorkerCommand(), m.versionCommand())
	// ExecuteC adds help and completion too, but leaves them be once they are there.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	var prepare func(*cobra.Command)
	prepare = func(c *cobra.Command) {
		if c.HasSubCommands() && !c.Runnable() {
			c.Args, c.RunE = cobra.ArbitraryArgs, groupRun
			// The flags of a command that is not there (burla jobs frobnicate
			// --temporal …) are not the error.
			c.FParseErrWhitelist.UnknownFlags = true
			c.SuggestionsMinimumDistance = 2
		}
		if args := c.Args; args != nil {
			// Wrong arguments are a usage error, cobra's validators' (NoArgs,
			// ExactArgs) as much as ours.
			c.Args = func(c *cobra.Command, a []string) error {
				if err := args(c, a); err != nil {
					return &usageError{err: err}
				}
				return nil
			}
		}
		for _, sub := range c.Commands() {
			prepare(sub)
		}
	}
	prepare(root)
	return root
}

// groupRun runs a command that only groups others (burla, burla cluster, burla
// completion): alone, or with a word that is none of its commands, it is a usage
// error.
func groupRun(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return usageErrorf("%sgive a command", where(cmd))
	}
	msg := fmt.Sprintf("%sunknown command %q", where(cmd), args[0])
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += fmt.Sprintf(" (did you mean %s?)", strings.Join(s, " or "))
	}
	return usageErrorf("%s", msg)
}

// where is the prefix of cmd's error messages: "cluster up: " for burla cluster
// up, "" for burla itself.
func where(cmd *cobra.Command) string {
	if !cmd.HasParent() {
		return ""
	}
	return strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ") + ": "
}

// noArgs is a command's Args: it takes none. hint, if any, says what to give
// instead.
func noArgs(hint string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) == 0:
			return nil
		case hint != "":
			return fmt.Errorf("%s takes no arguments, got %q (%s)", strings.TrimSuffix(where(cmd), ": "), args, hint)
		}
		return fmt.Errorf("%s takes no arguments, got %q", strings.TrimSuffix(where(cmd), ": "), args)
	}
}

// oneArg is a command's Args: it takes one, what.
func oneArg(what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return fmt.Errorf("%sgive one %s, got %q", where(cmd), what, args)
		}
		return nil
	}
}

// isTerminal reports whether m's stdout is a terminal.
func (m *Main) isTerminal() bool {
	if m.terminal != nil {
		return m.terminal()
	}
	f, ok := m.Stdout.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// linuxOnly is a command this build of burla cannot run: it takes any
// arguments and fails, saying where it runs.
func linuxOnly(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:                use,
		Short:              short + " (Linux only)",
		DisableFlagParsing: true,
		RunE: func(*cobra.Command, []string) error {
			return fmt.Errorf("burla %s runs only on Linux, and this burla is built for %s/%s: run it on a Linux machine (or a Linux VM or container) and point BURLA_TEMPORAL_ADDRESS and BURLA_STORE_URL here at it", use, runtime.GOOS, runtime.GOARCH)
		},
	}
}

// logger logs to m's stderr, warnings and worse unless verbose.
func (m *Main) logger(verbose bool, attrs ...any) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(m.Stderr, &slog.HandlerOptions{Level: level})).With(attrs...)
}

// dialTemporal connects to Temporal, secured as the environment says (package
// temporalconn: BURLA_TEMPORAL_API_KEY and the TLS variables), the client's own
// logging kept to warnings. A metrics handler, if given, receives the client's
// and its workers' metrics.
func (m *Main) dialTemporal(ctx context.Context, addr, namespace string, metrics ...client.MetricsHandler) (client.Client, error) {
	o := client.Options{HostPort: addr, Namespace: namespace, Logger: tlog.NewStructuredLogger(m.logger(false))}
	if len(metrics) > 0 {
		o.MetricsHandler = metrics[0]
	}
	c, err := temporalconn.FromEnv().Dial(ctx, o)
	var denied *serviceerror.PermissionDenied
	if err != nil && grpcstatus.Code(err) != codes.Unauthenticated && !errors.As(err, &denied) {
		// Not a refusal: nothing (or nothing that speaks Temporal) answered.
		return nil, fmt.Errorf("%w: %w", errUnreachable, err)
	}
	return c, err
}
