package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/burla-temporal/burla/store/storeurl"
)

// longFlags returns args with every single-dash long flag of the command they
// name given two dashes: -nodes 2 becomes --nodes 2, and -data-dir=DIR
// --data-dir=DIR. burla parsed its flags with Go's flag package, which takes a
// flag with one dash or two, before it moved to cobra, whose flags (pflag) take
// one dash only before a one-letter shorthand; scripts, compose files, and node
// agents' command lines written by another burla may spell a flag with one. Only
// a name of two letters or more that the command has as a flag is rewritten,
// never a flag's value (in --tenant -acme) nor anything after "--". As with the
// flag package, the command's words come first (burla cluster up -nodes 2).
func longFlags(root *cobra.Command, args []string) []string {
	out := make([]string, 0, len(args)) // not nil: given nil, cobra reads os.Args
	if len(args) > 0 && (args[0] == cobra.ShellCompRequestCmd || args[0] == cobra.ShellCompNoDescRequestCmd) {
		return append(out, args...) // a shell asks how to complete a partial command line
	}
	cmd, words := root, true // words: the next word may name a command under cmd
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		cmd.InitDefaultHelpFlag() // so that -help is --help
		flags := cmd.Flags()
		valued := false // a takes its value from the next argument
		switch {
		case strings.HasPrefix(a, "--"):
			name, _, inline := strings.Cut(a[2:], "=")
			f := flags.Lookup(name)
			valued = f != nil && !inline && f.NoOptDefVal == ""
		case strings.HasPrefix(a, "-") && len(a) > 1:
			name, _, inline := strings.Cut(a[1:], "=")
			if f := flags.Lookup(name); f != nil && len(name) > 1 {
				a = "-" + a
				valued = !inline && f.NoOptDefVal == ""
			} else {
				valued = shorthandsTakeNext(flags, a[1:])
			}
		case words:
			if c := subcommand(cmd, a); c != nil {
				cmd = c
			} else {
				words = false
			}
		}
		out = append(out, a)
		if valued && i+1 < len(args) {
			i++
			out = append(out, args[i])
		}
	}
	return out
}

// shorthandsTakeNext reports whether the one-letter flags in shorts (-wv: w, then
// v) take a value from the next argument: the first that takes a value takes
// the rest of shorts, or if it is the last, the next argument.
func shorthandsTakeNext(flags *pflag.FlagSet, shorts string) bool {
	for i := range len(shorts) {
		f := flags.ShorthandLookup(shorts[i : i+1])
		if f == nil {
			return false
		}
		if f.NoOptDefVal == "" {
			return i == len(shorts)-1
		}
	}
	return false
}

// subcommand is cmd's command called name, or nil.
func subcommand(cmd *cobra.Command, name string) *cobra.Command {
	for _, c := range cmd.Commands() {
		if c.Name() == name || c.HasAlias(name) {
			return c
		}
	}
	return nil
}

// addOutputFlags defines -o (--output) and --json on fs, of a command that
// prints data. Neither given, it prints JSON when stdout is not a terminal.
func addOutputFlags(fs *pflag.FlagSet) {
	fs.VarP(new(outputFormat), "output", "o", "print json, one object per line, or a table (default: a table on a terminal, JSON otherwise)")
	fs.Bool("json", false, "print JSON, one object per line, even on a terminal: -o json")
}

// outputFormat is -o's value: json, table, or "" when not given.
type outputFormat string

func (f *outputFormat) String() string { return string(*f) }
func (f *outputFormat) Type() string   { return "json|table" }

func (f *outputFormat) Set(s string) error {
	if s != "json" && s != "table" {
		return fmt.Errorf("unknown output format %q: json or table", s)
	}
	*f = outputFormat(s)
	return nil
}

// formatOf is the output format that flags (-o and --json) ask for: json, table,
// or "" for none. --json with -o table is an error, the format then json.
func formatOf(flags *pflag.FlagSet) (string, error) {
	o, j := flags.Lookup("output"), flags.Lookup("json")
	if o == nil || j == nil {
		return "", nil
	}
	format := o.Value.String()
	if j.Value.String() == "true" {
		if format == "table" {
			return "json", errors.New("--json and -o table ask for different output: give one")
		}
		format = "json"
	}
	return format, nil
}

// wantJSON reports whether cmd prints JSON: when its -o or --json says so, or
// neither given, when stdout is not a terminal.
func (m *Main) wantJSON(cmd *cobra.Command) (bool, error) {
	format, err := formatOf(cmd.Flags())
	switch {
	case err != nil:
		return false, &usageError{err: fmt.Errorf("%s%w", where(cmd), err)}
	case format == "":
		return !m.isTerminal(), nil
	}
	return format == "json", nil
}

// errorsAsJSON reports whether cmd, which failed with err, says so in JSON too:
// when its output is JSON (a command without -o, when stdout is not a
// terminal). args is the command line.
func (m *Main) errorsAsJSON(cmd *cobra.Command, err error, args []string) bool {
	flags := cmd.Flags()
	if ue := (*usageError)(nil); errors.As(err, &ue) && ue.flags && flags.Lookup("output") != nil {
		// The flag parser stopped at the flag it could not parse: read -o and
		// --json past it too, skipping every other flag.
		flags = pflag.NewFlagSet(cmd.Name(), pflag.ContinueOnError)
		flags.SetOutput(io.Discard)
		flags.ParseErrorsAllowlist.UnknownFlags = true
		addOutputFlags(flags)
		_ = flags.Parse(args)
	}
	format, ferr := formatOf(flags)
	if format == "" && ferr == nil {
		return !m.isTerminal()
	}
	return format == "json"
}

// storeFlag defines --store, the data plane's URL, with --nats as its older name.
func storeFlag(fs *pflag.FlagSet) *string {
	v := storeurl.Default
	fs.StringVar(&v, "store", v, "the data plane: nats://host:port or firestore://PROJECT?bucket=BUCKET")
	fs.StringVar(&v, "nats", v, "the older name of --store")
	return &v
}

// listFlag defines a flag that may be given several times, each value a
// comma-separated list whose items, trimmed, it appends to vals.
func listFlag(fs *pflag.FlagSet, name, usage string, vals *[]string) {
	fs.Func(name, usage, func(v string) error {
		for item := range strings.SplitSeq(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				*vals = append(*vals, item)
			}
		}
		return nil
	})
}

// verboseFlag defines -v (--v), which makes a server log verbosely.
func verboseFlag(fs *pflag.FlagSet) *bool {
	return fs.BoolP("v", "v", false, "log verbosely")
}
