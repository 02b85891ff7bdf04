package gce

import (
	"fmt"
	"net/url"
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
)

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
// every boot: it fetches the burla binary afresh and (re)starts the node agent
// under systemd, which restarts it whenever it exits.
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
	err = scriptTemplate.Execute(&b, map[string]any{
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

// The unit's and the agent script's here-documents have quoted delimiters, so
// the shell expands nothing in them.
var scriptTemplate = template.Must(template.New("startup").Parse(`#!/bin/bash
# burla node {{.NodeID}}: written by burla's gce provider. It fetches the burla
# binary and runs its node agent under systemd; Compute Engine runs it at every boot.
set -euo pipefail

install -d -m 0755 {{.Dirs}}

dst={{.Binary}}.new
{{.Fetch}}
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
