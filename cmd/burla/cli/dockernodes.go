//go:build linux

package cli

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/pflag"

	"github.com/burla-temporal/burla/execfile"
	"github.com/burla-temporal/burla/provider"
	"github.com/burla-temporal/burla/provider/docker"
)

// dockerNodes is how `burla control-plane` serves the docker provider: nodes as
// containers on Docker engines, on this machine or on others.
type dockerNodes struct {
	enabled  bool
	hosts    []string
	tlsDir   string
	temporal string
	store    string
	instance string
}

// dockerNodeFlags defines the control plane's --docker-* flags on fs.
func dockerNodeFlags(fs *pflag.FlagSet) *dockerNodes {
	d := &dockerNodes{}
	fs.BoolVar(&d.enabled, "docker-nodes", false, "serve the docker provider: each node a container on a Docker engine (the burla binary must be static: CGO_ENABLED=0)")
	listFlag(fs, "docker-host", "Docker engines nodes are spread over, comma-separated: unix:///var/run/docker.sock, or tcp://HOST:2376 over TLS (repeatable; default: the engine DOCKER_HOST names, or the local socket)", &d.hosts)
	fs.StringVar(&d.tlsDir, "docker-tls-dir", "", "where the client certificate for tcp:// engines is: ca.pem, cert.pem and key.pem, in DIR/HOSTNAME for an engine that has its own, else in DIR")
	fs.StringVar(&d.temporal, "docker-node-temporal", "", "the Temporal address node containers connect to, from their engine's machine (default --temporal)")
	fs.StringVar(&d.store, "docker-node-store", "", "the store URL node containers connect to, from their engine's machine (default --store)")
	fs.StringVar(&d.instance, "docker-instance", "", "a name that sets this control plane's node containers apart on engines that others use too: their names (burla-NAME-node-ID) and label burla.instance")
	return d
}

// add connects to the engines and adds the docker provider to providers, when
// --docker-nodes is given, and says so on out. An engine that does not answer
// yet is kept (nodes go to the others until it does) unless none answers.
func (d *dockerNodes) add(ctx context.Context, out io.Writer, providers provider.Set, temporalAddr, namespace, storeURL string, log *slog.Logger) error {
	if !d.enabled {
		if len(d.hosts) > 0 || d.tlsDir != "" || d.temporal != "" || d.store != "" || d.instance != "" {
			return fmt.Errorf("the --docker-* flags need --docker-nodes")
		}
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	switch dyn, err := execfile.Dynamic(exe); {
	case err != nil:
		return fmt.Errorf("--docker-nodes: %w", err)
	case dyn:
		return fmt.Errorf("--docker-nodes: node containers run this program FROM scratch, and %s is dynamically linked; build it with CGO_ENABLED=0", exe)
	}
	hosts := d.hosts
	if len(hosts) == 0 {
		hosts = []string{""} // the environment's engine
	}
	var engines []docker.Engine
	for _, h := range hosts {
		e, err := docker.Connect(h, d.tlsDir)
		if err != nil {
			return err
		}
		engines = append(engines, e)
	}
	p, err := docker.NewWithEngines(engines, docker.Config{
		Executable:      exe,
		TemporalAddress: cmp.Or(d.temporal, temporalAddr),
		Namespace:       namespace,
		StoreURL:        cmp.Or(d.store, storeURL),
		Instance:        d.instance,
		NodeKey:         os.Getenv(envNodeKey),
		Logger:          log,
	})
	if err != nil {
		return err
	}
	switch answered, err := p.Ping(ctx); {
	case answered == 0:
		return err
	case err != nil:
		log.Warn("docker nodes: placing nodes on the engines that answer", "error", err)
	}
	providers["docker"] = p
	fmt.Fprintf(out, "burla control plane: docker nodes on %d engines, reaching Temporal at %s and the store at %s\n",
		len(engines), cmp.Or(d.temporal, temporalAddr), cmp.Or(d.store, storeURL))
	return nil
}
