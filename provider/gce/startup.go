package gce

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/template"
	"unicode"

	"github.com/burla-temporal/burla/provider"
)

// Paths on the VM.
const (
	binaryPath   = "/opt/burla/burla"
	agentScript  = "/opt/burla/node-agent.sh"
	cacheDir     = "/var/lib/burla/cache"
	metricsAddr  = "0.0.0.0:9464"
	agentUnit    = "burla-node-agent.service"
	tokenURL     = "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token"
	gcsObjectURL = "https://storage.googleapis.com/storage/v1/b/%s/o/%s?alt=media"
	// console is the VM's first serial port, whose output Compute Engine keeps
	// (gcloud compute instances get-serial-port-output): where a node that never
	// registers is looked into.
	console = "/dev/ttyS0"
)

// The metadata server's addresses. It answers DNS (53) and NTP (123) there as
// well, which every process needs, and HTTP, which hands out the VM's service
// account tokens, which only root may have.
const (
	metadataIPv4 = "169.254.169.254"
	metadataIPv6 = "fd20:ce::254"
)

// executableSHA256 is the hex SHA-256 of the running program. On Linux it reads
// /proc/self/exe, which is the file this process runs even after a newer binary
// was moved over its path (as deploy/gcp's startup script does before it
// restarts the control plane); elsewhere the file at os.Executable.
func executableSHA256() (string, error) {
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		exe, xerr := os.Executable()
		if xerr != nil {
			return "", fmt.Errorf("find this program: %w", xerr)
		}
		if f, err = os.Open(exe); err != nil {
			return "", fmt.Errorf("read this program: %w", err)
		}
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read this program: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// validSHA256 reports whether s is a SHA-256 as sha256sum writes it: 64
// lowercase hex digits, which the startup script may hold unquoted.
func validSHA256(s string) bool {
	return len(s) == 64 && !strings.ContainsFunc(s, func(r rune) bool { return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') })
}

// agentArgs is the node agent's command line for node n, binary first.
func agentArgs(cfg Config, n provider.NodeSpec) []string {
	args := []string{binaryPath, "node-agent",
		"--id", n.ID,
		"--cluster", n.Cluster,
		"--cpus", strconv.Itoa(n.CPUs),
		"--ram-mb", strconv.Itoa(n.RAMMB),
		"--temporal", cfg.TemporalAddress,
		"--namespace", cfg.Namespace,
		"--store", cfg.StoreURL,
		"--cache-dir", cacheDir,
		"--runtime", cfg.Runtime,
		"--metrics-addr", metricsAddr,
	}
	for _, env := range n.Envs {
		args = append(args, "--env", env)
	}
	return append(args, cfg.ExtraAgentArgs...)
}

// fetchCommand is the shell command that downloads rawURL to $dst: a gs:// URL
// through the Cloud Storage JSON API with the VM's service account token (no
// gsutil or gcloud needed), an https URL directly.
func fetchCommand(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	switch {
	case err != nil:
		return "", fmt.Errorf("BinaryURL %q: %w", rawURL, err)
	case u.Scheme == "https" && u.Host != "":
		return "curl -fsSL --retry 10 --retry-all-errors -o \"$dst\" " + shellQuote(rawURL), nil
	case u.Scheme == "gs" && u.Host != "" && strings.TrimPrefix(u.Path, "/") != "":
		// The JSON API wants the whole object name as one path segment, '/'
		// included; QueryEscape escapes '/' but makes ' ' a '+'.
		object := strings.ReplaceAll(url.QueryEscape(strings.TrimPrefix(u.Path, "/")), "+", "%20")
		src := fmt.Sprintf(gcsObjectURL, url.PathEscape(u.Host), object)
		return "token=$(curl -fsS --retry 10 --retry-all-errors -H 'Metadata-Flavor: Google' " + shellQuote(tokenURL) +
			" | sed -n 's/.*\"access_token\" *: *\"\\([^\"]*\\)\".*/\\1/p')\n" +
			"curl -fsSL --retry 10 --retry-all-errors -H \"Authorization: Bearer $token\" -o \"$dst\" " + shellQuote(src), nil
	default:
		return "", fmt.Errorf("BinaryURL %q: want gs://bucket/object or an https URL", rawURL)
	}
}

// startupScript is the VM's startup script, which Compute Engine runs as root at
// every boot: it closes the metadata server to every user but root (a Firestore
// store's workers get their tokens from the node agent, see
// firestorestore.WorkerTokens), fetches the burla binary afresh,
// checks that it is the one the control plane vouches for (Config.BinarySHA256)
// and (re)starts the node agent under systemd, which restarts it whenever it
// exits. A step that fails ends the script before the agent starts.
func startupScript(cfg Config, n provider.NodeSpec) (string, error) {
	args := agentArgs(cfg, n)
	// Values are single-quoted, which the shell takes literally, but the agent's
	// script is written through a here-document, which a value with a line
	// break could end early; no flag value has a reason to hold one.
	for _, a := range append([]string{cfg.BinaryURL}, args...) {
		if strings.ContainsFunc(a, unicode.IsControl) {
			return "", fmt.Errorf("startup script: value %q holds a control character", a)
		}
	}
	fetch, err := fetchCommand(cfg.BinaryURL)
	if err != nil {
		return "", err
	}
	for _, v := range []string{cfg.TemporalServerName, cfg.TemporalAPIKeySecret} {
		if strings.ContainsFunc(v, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) || r == '\'' || r == '"' }) {
			return "", fmt.Errorf("startup script: Temporal setting %q holds a space, quote or control character", v)
		}
	}
	var env []string // the agent's environment, besides the secret
	if cfg.TemporalTLS || cfg.TemporalAPIKeySecret != "" {
		env = append(env, "BURLA_TEMPORAL_TLS=1")
	}
	if cfg.TemporalServerName != "" {
		env = append(env, "BURLA_TEMPORAL_TLS_SERVER_NAME="+cfg.TemporalServerName)
	}
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = shellQuote(a)
	}
	// Lines of the agent's command: the binary and command, then a flag and its
	// value a line.
	lines := []string{quoted[0] + " " + quoted[1]}
	for i := 2; i < len(quoted); i++ {
		if strings.HasPrefix(args[i], "--") && i+1 < len(quoted) && !strings.HasPrefix(args[i+1], "--") {
			lines = append(lines, quoted[i]+" "+quoted[i+1])
			i++
			continue
		}
		lines = append(lines, quoted[i])
	}
	var b strings.Builder
	if !validSHA256(cfg.BinarySHA256) {
		return "", fmt.Errorf("startup script: the binary's SHA-256 %q is not 64 lowercase hex digits", cfg.BinarySHA256)
	}
	err = scriptTemplate.Execute(&b, map[string]any{
		"Console":  console,
		"Ruleset":  metadataRuleset,
		"SHA256":   cfg.BinarySHA256,
		"Binary":   binaryPath,
		"Dirs":     "/opt/burla " + cacheDir,
		"Fetch":    fetch,
		"Docker":   cfg.Runtime == "docker",
		"Script":   agentScript,
		"Command":  strings.Join(lines, " \\\n  "),
		"Unit":     agentUnit,
		"NodeID":   n.ID,
		"UnitPath": "/etc/systemd/system/" + agentUnit,
		"Env":      env,
		"Secret":   cfg.TemporalAPIKeySecret,
		"TokenURL": shellQuote(tokenURL),
	})
	if err != nil {
		return "", err
	}
	return b.String(), nil
}

// shellQuote quotes s for a POSIX shell: within single quotes every character is
// literal, so a single quote in s ends the quoted string, is written escaped (\'),
// and a new quoted string begins.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// The unit's, the agent script's and the ruleset's here-documents have quoted
// delimiters, so the shell expands nothing in them.
//
// The metadata server's block is a table of nftables' own, which Docker's rules
// (iptables, in tables of their own) neither flush nor reorder; a packet any
// table rejects is dropped, whatever the others say. Its output chain sees every
// packet a process of this VM sends from the VM's network namespace, those of
// the docker runtime's containers included: they share the host's network (and
// no user namespace), so their sockets are the host's, owned by uid 65534, the
// user they run as, as the process runtime's workers do (tenantbox.TenantUID).
// "meta skuid" is that owner; it is root for the agent, the guest agent and this
// script. A packet without a socket (the kernel's own) has no owner and is not
// matched. Its forward chain stands for Docker's DOCKER-USER: it rejects what a
// container on a bridge network, whose packets are forwarded and have no owner,
// would send there. The whole link-local range goes, as nothing a job needs is
// there; DNS and NTP to the metadata server stay open to all. A refused TCP
// connection is reset, at once (an ICMP error would be rate-limited, and a
// client that probes for the server, as Google's libraries do, would wait).
// metadataRuleset is the nftables ruleset that closes the metadata server to all
// but root; the control plane's VM loads the same file (deploy/gcp/control-plane.sh).
//
//go:embed metadata-block.nft
var metadataRuleset string

var scriptTemplate = template.Must(template.New("startup").Parse(`#!/bin/bash
# burla node {{.NodeID}}: written by burla's gce provider. It keeps tenants' code
# from the metadata server, fetches the burla binary, checks it, and runs its node
# agent under systemd; Compute Engine runs it at every boot.
set -euo pipefail

# fail says why the node cannot start, on the serial console as well, and ends the
# script before the node agent starts.
console={{.Console}}
fail() {
  printf 'burla node {{.NodeID}}: %s\n' "$*" >&2
  printf 'burla node {{.NodeID}}: %s\n' "$*" 2>/dev/null >"$console" || true
  exit 1
}

# Only root reaches the metadata server, and the service account tokens it hands
# out: tenants' code runs as uid 65534, in processes or in containers on the host's
# network, and gets DNS and NTP there and nothing else of the link-local range.
# Workers reach a Firestore store with tokens the node agent hands them.
if ! command -v nft >/dev/null; then
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nftables; } ||
    fail "nft is missing and nftables would not install: cannot close the metadata server to tenants' code, so the node agent does not start"
fi
nft -f - <<'BURLA_EOF' || fail "nft refused the ruleset that closes the metadata server to tenants' code, so the node agent does not start"
{{.Ruleset}}BURLA_EOF

install -d -m 0755 {{.Dirs}}

dst={{.Binary}}.new
{{.Fetch}}
# Run only the binary the control plane vouches for: whoever could write where it
# is fetched from would otherwise run code as root here.
if ! printf '%s  %s\n' '{{.SHA256}}' "$dst" | sha256sum --check --status; then
  got=$(sha256sum <"$dst" | cut -d ' ' -f 1) || got=unreadable
  rm -f "$dst"
  fail "refusing the burla binary fetched at boot: its SHA-256 is $got, not {{.SHA256}}, so the node agent does not start"
fi
chmod 0755 "$dst"
mv -f "$dst" {{.Binary}}
{{if .Docker}}
# The docker runtime runs workers in containers on the VM's own engine.
if ! command -v docker >/dev/null; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io
fi
{{end}}
{{- if .Secret}}
# The Temporal API key, from Secret Manager into a file only root reads.
token=$(curl -fsS --retry 10 --retry-all-errors -H 'Metadata-Flavor: Google' {{.TokenURL}} | sed -n 's/.*"access_token" *: *"\([^"]*\)".*/\1/p')
key=$(curl -fsS --retry 10 --retry-all-errors -H "Authorization: Bearer $token" 'https://secretmanager.googleapis.com/v1/{{.Secret}}:access' | sed -n 's/.*"data" *: *"\([^"]*\)".*/\1/p' | base64 -d)
install -d -m 0700 /etc/burla
(umask 077; printf 'BURLA_TEMPORAL_API_KEY=%s\n' "$key" >/etc/burla/agent.env)
unset key token
{{end}}
cat >{{.Script}} <<'BURLA_EOF'
#!/bin/sh
exec {{.Command}}
BURLA_EOF
chmod 0755 {{.Script}}

cat >{{.UnitPath}} <<'BURLA_EOF'
[Unit]
Description=burla node agent
Wants=network-online.target{{if .Docker}} docker.service{{end}}
After=network-online.target{{if .Docker}} docker.service{{end}}

[Service]
ExecStart={{.Script}}{{range .Env}}
Environment={{.}}{{end}}{{if .Secret}}
EnvironmentFile=/etc/burla/agent.env{{end}}
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
BURLA_EOF

systemctl daemon-reload
systemctl restart {{.Unit}}
`))
