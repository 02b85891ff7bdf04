package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"

	"github.com/burla-temporal/burla/wire"
)

// runBurla runs the command with args in process, its stdout a terminal if
// terminal, and returns its exit status and what it printed.
func runBurla(t *testing.T, terminal bool, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	m := &Main{Args: args, Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut, terminal: func() bool { return terminal }}
	code = m.Run(context.Background())
	return code, out.String(), errOut.String()
}

// errorLine decodes stderr's last line as burla's JSON error line; ok is false
// if it is not one.
func errorLine(stderr string) (msg string, code int, ok bool) {
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	var e struct {
		Error *string `json:"error"`
		Code  *int    `json:"code"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &e); err != nil || e.Error == nil || e.Code == nil {
		return "", 0, false
	}
	return *e.Error, *e.Code, true
}

// Every usage error exits 2 and prints "burla: <message>", the command's usage
// and, as stdout is no terminal here, the JSON error line last.
func TestUsageErrors(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "keys.json")
	for _, tc := range []struct {
		args  []string
		msg   string // in the message
		usage string // in the usage after it
	}{
		{nil, "give a command", "burla [command]"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`, "Available Commands:"},
		{[]string{"clustr"}, "did you mean cluster?", "Available Commands:"},
		{[]string{"--bogus"}, "give a command", "burla [command]"},
		{[]string{"cluster"}, "cluster: give a command", "burla cluster [command]"},
		{[]string{"cluster", "frobnicate", "--nodes", "2"}, `cluster: unknown command "frobnicate"`, "burla cluster [command]"},
		{[]string{"cluster", "status", "--bogus"}, "cluster status: unknown flag: --bogus", "burla cluster status [flags]"},
		{[]string{"cluster", "status", "extra"}, `cluster status takes no arguments, got ["extra"] (name a cluster with --cluster)`, "--watch"},
		{[]string{"cluster", "up", "--nodes", "-1"}, "standby nodes -1 is negative", "burla cluster up [flags]"},
		{[]string{"cluster", "up", "--nodes", "two"}, `invalid argument "two" for "--nodes" flag`, "--tenant-nodes"},
		{[]string{"cluster", "set-standby", "--tenant-nodes", "acme"}, "want TENANT=N", "burla cluster set-standby [flags]"},
		{[]string{"jobs", "show"}, "jobs show: give one job ID, got []", "burla jobs show JOB-ID [flags]"},
		{[]string{"jobs", "frobnicate", "j-1", "--temporal", "127.0.0.1:1"}, `jobs: unknown command "frobnicate"`, "burla jobs [command]"},
		{[]string{"jobs", "ls", "--state", "Sleeping"}, `unknown state "Sleeping"`, "burla jobs ls [flags]"},
		{[]string{"jobs", "ls", "-o", "yaml"}, `invalid argument "yaml" for "-o, --output" flag`, "burla jobs ls [flags]"},
		{[]string{"keys", "add", "--file", keys}, "keys add: give --tenant NAME", "burla keys add [flags]"},
		{[]string{"keys", "add", "--file", keys, "--role", "emperor"}, `unknown role "emperor"`, "--tenant"},
		{[]string{"keys", "revoke", "--file", keys}, "keys revoke: give one key ID", "burla keys revoke ID [flags]"},
		{[]string{"keys", "revoke", "abc", "--file", keys}, "give at least 6 hex digits", "burla keys revoke ID [flags]"},
		{[]string{"version", "extra"}, `version takes no arguments, got ["extra"]`, "burla version [flags]"},
		{[]string{"version", "-o", "yaml"}, `unknown output format "yaml": json or table`, "--output json|table"},
		{[]string{"version", "--json", "-o", "table"}, "--json and -o table ask for different output", "burla version [flags]"},
		{[]string{"completion"}, "completion: give a command", "burla completion [command]"},
		{[]string{"completion", "tcsh"}, `completion: unknown command "tcsh"`, "burla completion [command]"},
		{[]string{"certs", "make"}, "certs make: give --dir DIR", "burla certs make [flags]"},
		{[]string{"dev", "extra"}, `dev takes no arguments, got ["extra"]`, "burla dev [flags]"},
		{[]string{"node-agent", "--bogus"}, "node-agent: unknown flag: --bogus", "--cache-dir"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, stdout, stderr := runBurla(t, false, tc.args...)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d\nstderr:\n%s", code, exitUsage, stderr)
			}
			if stdout != "" {
				t.Errorf("printed on stdout: %q", stdout)
			}
			first, rest, _ := strings.Cut(stderr, "\n")
			if !strings.HasPrefix(first, "burla: ") || !strings.Contains(first, tc.msg) {
				t.Errorf("first line %q; want burla: …%s…", first, tc.msg)
			}
			if !strings.Contains(rest, "Usage:") || !strings.Contains(rest, tc.usage) {
				t.Errorf("no usage with %q after the message:\n%s", tc.usage, rest)
			}
			msg, c, ok := errorLine(stderr)
			if !ok || c != exitUsage || "burla: "+msg != first {
				t.Errorf("last line: error %q, code %d (a JSON error line: %v); want the message and code %d\n%s", msg, c, ok, exitUsage, stderr)
			}
		})
	}
}

// With JSON output the last line of stderr is {"error":…,"code":N}; on a
// terminal, output is JSON with -o json or --json only, wherever the error is
// on the command line.
func TestJSONErrorLine(t *testing.T) {
	nokeys := filepath.Join(t.TempDir(), "nokeys.json")
	for _, tc := range []struct {
		args     []string
		terminal bool
		code     int
		json     bool
	}{
		{[]string{"version", "--bogus"}, true, exitUsage, false},
		{[]string{"version", "--bogus"}, false, exitUsage, true},
		{[]string{"version", "--bogus", "--json"}, true, exitUsage, true},
		{[]string{"version", "--json", "--bogus"}, true, exitUsage, true},
		{[]string{"version", "--bogus", "-o", "json"}, true, exitUsage, true},
		{[]string{"version", "--bogus", "-o", "table"}, false, exitUsage, false},
		{[]string{"version", "extra", "-o", "json"}, true, exitUsage, true},
		{[]string{"keys", "ls", "--file", nokeys}, true, exitNotFound, false},
		{[]string{"keys", "ls", "--file", nokeys}, false, exitNotFound, true},
		{[]string{"keys", "ls", "--file", nokeys, "--json"}, true, exitNotFound, true},
		{[]string{"keys", "ls", "--file", nokeys, "-o", "json"}, true, exitNotFound, true},
		{[]string{"keys", "ls", "--file", nokeys, "-o", "table"}, false, exitNotFound, false},
		{[]string{"keys", "revoke", "0123456789ab", "--file", nokeys, "-ojson"}, true, exitNotFound, true},
		// A command without -o prints JSON when stdout is not a terminal.
		{[]string{"certs", "make"}, true, exitUsage, false},
		{[]string{"certs", "make"}, false, exitUsage, true},
	} {
		where := "not on a terminal"
		if tc.terminal {
			where = "on a terminal"
		}
		t.Run(strings.Join(tc.args, " ")+" "+where, func(t *testing.T) {
			code, _, stderr := runBurla(t, tc.terminal, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s", code, tc.code, stderr)
			}
			msg, c, ok := errorLine(stderr)
			switch {
			case ok != tc.json:
				t.Errorf("a JSON error line: %v, want %v\n%s", ok, tc.json, stderr)
			case ok && (c != tc.code || msg == "" || !strings.HasPrefix(stderr, "burla: "+msg+"\n")):
				t.Errorf("JSON error line %q, code %d; want the first line's message, code %d\n%s", msg, c, tc.code, stderr)
			}
		})
	}
}

// -h, --help and burla help print help on stdout and exit 0.
func TestHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"-h"}, []string{"usage: burla <command>", "exit status (every command)", "Available Commands:"}},
		{[]string{"--help"}, []string{"usage: burla <command>"}},
		{[]string{"-help"}, []string{"usage: burla <command>"}},
		{[]string{"help"}, []string{"usage: burla <command>", "completion"}},
		{[]string{"cluster", "-h"}, []string{"usage: burla cluster <command>", "set-standby"}},
		{[]string{"cluster", "status", "--help"}, []string{"usage: burla cluster <command>", "burla cluster status [flags]", "-w, --watch"}},
		{[]string{"help", "cluster", "up"}, []string{"burla cluster up [flags]", "--nodes int", "--cpus int", "--tenant-max-nodes int", "--tenant-nodes stringArray", "-o, --output json|table"}},
		{[]string{"help", "jobs", "logs"}, []string{"usage: burla jobs", "burla jobs logs JOB-ID [flags]", "-f, --f"}},
		{[]string{"keys", "ls", "-h"}, []string{"usage: burla keys", "Aliases:", "--file string"}},
		{[]string{"version", "-h"}, []string{"usage: burla version", "--json"}},
		{[]string{"dev", "--help"}, []string{"burla dev [flags]", "--nodes int", "-v, --v"}},
		{[]string{"node-agent", "-h"}, []string{"--cache-dir string", "--nats string"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, stdout, stderr := runBurla(t, true, tc.args...)
			if code != exitOK || stderr != "" {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stdout, w) {
					t.Errorf("help lacks %q:\n%s", w, stdout)
				}
			}
		})
	}
	// The standby spec's flags are only for up and set-standby; the other
	// commands still take them, as they did, but do not show them.
	if _, stdout, _ := runBurla(t, true, "help", "cluster", "restart"); strings.Contains(stdout, "--nodes int") {
		t.Errorf("burla help cluster restart shows --nodes:\n%s", stdout)
	}
	if code, _, stderr := runBurla(t, false, "cluster", "restart", "--nodes", "3", "--temporal", "127.0.0.1:1", "--timeout", "10s"); code != exitUnreachable {
		t.Errorf("cluster restart --nodes 3 with nothing at its --temporal: exit %d, want %d\n%s", code, exitUnreachable, stderr)
	}
}

func TestCompletion(t *testing.T) {
	for shell, want := range map[string]string{"bash": "__start_burla", "zsh": "#compdef burla", "fish": "complete -c burla", "powershell": "Register-ArgumentCompleter"} {
		code, stdout, stderr := runBurla(t, true, "completion", shell)
		if code != exitOK || !strings.Contains(stdout, want) {
			t.Errorf("burla completion %s: exit %d, script has %q: %v\n%s", shell, code, want, strings.Contains(stdout, want), stderr)
		}
	}
	// What the script asks the shell to complete.
	code, stdout, _ := runBurla(t, true, "__complete", "cluster", "up", "--no")
	if code != exitOK || !strings.Contains(stdout, "--nodes") {
		t.Errorf("completing cluster up --no: exit %d\n%s", code, stdout)
	}
}

// A flag with one dash is read as with two, as Go's flag package read it, when
// the command has it; its value and whatever follows "--" are left alone.
func TestSingleDashFlags(t *testing.T) {
	root := (&Main{}).command()
	for _, tc := range []struct{ in, want string }{
		{"cluster up -nodes 3", "cluster up --nodes 3"},
		{"cluster up -nodes=3 -cpus=1", "cluster up --nodes=3 --cpus=1"},
		{"cluster up -nodes -1 -json", "cluster up --nodes -1 --json"},
		{"cluster up -o json -nodes 2", "cluster up -o json --nodes 2"},
		{"cluster up -ojson -nodes 2", "cluster up -ojson --nodes 2"},
		{"cluster status -w -timeout 1m", "cluster status -w --timeout 1m"},
		{"cluster up -bogus 2", "cluster up -bogus 2"},
		{"cluster up -- -nodes 2", "cluster up -- -nodes 2"},
		{"cluster -nodes 2", "cluster -nodes 2"}, // cluster alone has no --nodes
		{"keys add -tenant -acme -role tenant", "keys add --tenant -acme --role tenant"},
		{"keys list -file F -json", "keys list --file F --json"},
		{"jobs logs -temporal T j-1 -f", "jobs logs --temporal T j-1 -f"},
		{"jobs ls -state Running -limit 5", "jobs ls --state Running --limit 5"},
		{"dev -data-dir D -nodes 1 -v -tls", "dev --data-dir D --nodes 1 -v --tls"},
		{"control-plane -local-node-wrapper -nodes -docker-nodes", "control-plane --local-node-wrapper -nodes --docker-nodes"},
		{"node-agent -id n -cache-dir C -nats nats://x -env a -env b", "node-agent --id n --cache-dir C --nats nats://x --env a --env b"},
		{"container-worker -node n -slot 1 -store S -agent-tokens", "container-worker --node n --slot 1 --store S --agent-tokens"},
		{"temporal-server -ui-port=-1 -port 0", "temporal-server --ui-port=-1 --port 0"},
		{"help cluster up", "help cluster up"},
		{"-help", "--help"},
		{"version -json", "version --json"},
		{"__complete cluster up -nod", "__complete cluster up -nod"},
	} {
		if got := strings.Join(longFlags(root, strings.Fields(tc.in)), " "); got != tc.want {
			t.Errorf("%s: read as %s, want %s", tc.in, got, tc.want)
		}
	}
	if args := longFlags(root, nil); args == nil {
		t.Error("no arguments made nil, which cobra takes for os.Args")
	}

	// Run, with the flags read as parsed.
	code, _, stderr := runBurla(t, false, "cluster", "up", "-nodes", "-1")
	if msg, _, _ := errorLine(stderr); code != exitUsage || !strings.Contains(msg, "standby nodes -1 is negative") {
		t.Errorf("cluster up -nodes -1: exit %d\n%s", code, stderr)
	}
	keys := filepath.Join(t.TempDir(), "keys.json")
	code, stdout, stderr := runBurla(t, true, "keys", "add", "-tenant", "acme", "-file="+keys, "-json")
	var added struct{ Tenant, File string }
	if err := json.Unmarshal([]byte(stdout), &added); code != exitOK || err != nil || added.Tenant != "acme" || added.File != keys {
		t.Errorf("keys add -tenant acme -file=%s -json: exit %d, %+v (%v)\nstdout:\n%s\nstderr:\n%s", keys, code, added, err, stdout, stderr)
	}
}

func TestVersion(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		terminal bool
	}{
		{[]string{"version", "--json"}, true},
		{[]string{"version", "-o", "json"}, true},
		{[]string{"version", "--output=json"}, true},
		{[]string{"version"}, false},
	} {
		code, stdout, stderr := runBurla(t, tc.terminal, tc.args...)
		var v struct {
			Version  *string `json:"version"`
			Protocol *int    `json:"protocol"`
			Go       *string `json:"go"`
		}
		if err := json.Unmarshal([]byte(stdout), &v); code != exitOK || err != nil || strings.Count(stdout, "\n") != 1 {
			t.Fatalf("%v: exit %d, stdout %q (%v)\n%s", tc.args, code, stdout, err, stderr)
		}
		if v.Version == nil || *v.Version != "dev" || v.Protocol == nil || *v.Protocol != wire.Version || v.Go == nil || *v.Go != goruntime.Version() {
			t.Errorf("%v: %s; want version dev, protocol %d, go %s", tc.args, stdout, wire.Version, goruntime.Version())
		}
	}
	for _, tc := range []struct {
		args     []string
		terminal bool
	}{{[]string{"version"}, true}, {[]string{"version", "-o", "table"}, false}} {
		if code, stdout, _ := runBurla(t, tc.terminal, tc.args...); code != exitOK || !strings.HasPrefix(stdout, "burla dev (protocol ") {
			t.Errorf("%v: exit %d, %q; want a line of text", tc.args, code, stdout)
		}
	}
}

// keys prints a table or JSON as -o says, whatever stdout is.
func TestKeysOutput(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys.json")
	code, stdout, stderr := runBurla(t, false, "keys", "add", "--file", file, "--tenant", "acme", "-o", "table")
	if code != exitOK || !strings.HasPrefix(stdout, "bk_tenant_acme_") || !strings.Contains(stderr, "it is not shown again") {
		t.Fatalf("keys add -o table: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	code, stdout, _ = runBurla(t, false, "keys", "ls", "--file", file, "-o", "table")
	if lines := strings.Split(strings.TrimSpace(stdout), "\n"); code != exitOK || len(lines) != 2 || !strings.HasPrefix(lines[0], "ID") {
		t.Errorf("keys ls -o table: exit %d\n%s", code, stdout)
	}
	code, stdout, _ = runBurla(t, true, "keys", "list", "--file", file, "-o", "json")
	var e struct{ ID, Role, Tenant string }
	if err := json.Unmarshal([]byte(stdout), &e); code != exitOK || err != nil || e.Role != "tenant" || e.Tenant != "acme" {
		t.Errorf("keys list -o json: exit %d, %+v (%v)\n%s", code, e, err, stdout)
	}
	code, stdout, _ = runBurla(t, true, "keys", "revoke", e.ID, "--file", file, "--output", "json")
	var rev struct {
		Revoked int
		ID      string
	}
	if err := json.Unmarshal([]byte(stdout), &rev); code != exitOK || err != nil || rev.Revoked != 1 || rev.ID != e.ID {
		t.Errorf("keys revoke --output json: exit %d, %+v (%v)\n%s", code, rev, err, stdout)
	}
}

// The exit statuses stay what scripts know them as.
func TestExitCodes(t *testing.T) {
	for err, code := range map[error]int{
		nil:                        exitOK,
		usageErrorf("x"):           exitUsage,
		errJobFailed:               exitJobFailed,
		errNoCluster:               exitNotFound,
		errNoKeysFile:              exitNotFound,
		errUnreachable:             exitUnreachable,
		context.DeadlineExceeded:   exitError,
		&usageError{err: errNoKey}: exitUsage,
	} {
		if got := exitCode(err); got != code {
			t.Errorf("exitCode(%v) = %d, want %d", err, got, code)
		}
	}
}

// On a system other than Linux, the commands only a Linux machine runs take any
// flags and fail, saying where they run.
func TestLinuxOnlyCommand(t *testing.T) {
	cmd := linuxOnly("dev", "run a local cluster")
	cmd.SetArgs([]string{"--nodes", "2", "extra"})
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	err := cmd.Execute()
	if err == nil || !strings.Contains(err.Error(), "burla dev runs only on Linux, and this burla is built for "+goruntime.GOOS+"/"+goruntime.GOARCH) {
		t.Errorf("burla dev where it cannot run: %v", err)
	}
	if !strings.HasSuffix(cmd.Short, "(Linux only)") {
		t.Errorf("its help says %q, not that it runs on Linux only", cmd.Short)
	}
}
