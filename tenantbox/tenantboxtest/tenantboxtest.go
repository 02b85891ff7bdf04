// Package tenantboxtest holds what the tests of tenants' isolation share.
package tenantboxtest

// Credentials are variables a node's environment may hold that no tenant may
// see, each with a value of its own: tenantbox's tests of the allow-list and
// containerworker's of a whole worker check that none reaches tenants' code.
var Credentials = []string{
	"BURLA_API_KEY=node-key", "BURLA_NODE_API_KEY=node-key-2", "BURLA_TEMPORAL_API_KEY=temporal-key",
	"BURLA_TEMPORAL_TLS_CERT=/etc/burla/tls.crt", "BURLA_TEMPORAL_TLS_KEY=/etc/burla/tls.key", "BURLA_TEMPORAL_TLS_CA=/etc/burla/ca.crt",
	"GOOGLE_APPLICATION_CREDENTIALS=/etc/burla/gcp.json", "AWS_ACCESS_KEY_ID=AKIAEXAMPLE",
	"AWS_SECRET_ACCESS_KEY=aws-secret", "AWS_SESSION_TOKEN=aws-session", "GITHUB_TOKEN=ghp_example",
	"SSH_AUTH_SOCK=/tmp/ssh-agent.sock", "DOCKER_HOST=unix:///var/run/docker.sock",
	"BURLA_STORE_URL=nats://user:pass@127.0.0.1:4222", "FIRESTORE_EMULATOR_HOST=127.0.0.1:8080",
}
