package natsstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/burla-temporal/burla/auth"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/store"
	"github.com/burla-temporal/burla/store/natsstore"
)

// A tenant's key reaches its own account only: the grants it publishes, to a
// node's subject as a node's agent listens for them, never reach the agent,
// while the control plane's do.
func TestTenantsCannotGrant(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, keys := serverWithKeys(t, holder{auth.RoleTenant, "evil"}, holder{auth.RoleNode, ""}, holder{auth.RoleControl, ""})
	evilKey, nodeKey, controlKey := keys[0], keys[1], keys[2]
	node, err := natsstore.ConnectTenants(ctx, srv.URL(), "node", nodeKey)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Close)
	ctl, err := natsstore.ConnectTenants(ctx, srv.URL(), "control", controlKey)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ctl.Close)
	evil, err := natsstore.Connect(ctx, srv.URL(), "evil", nats.Token(evilKey))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(evil.Close)

	got := make(chan store.Grant, 10)
	stop, err := node.WatchGrants(ctx, "n-1", func(g store.Grant) { got <- g })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	forged := store.Grant{Spec: job.Spec{ID: job.NewID(time.Now(), "evil")}, Workers: 4}
	if err := evil.PutGrant(ctx, "n-1", forged); err != nil {
		t.Fatal(err)
	}
	// Published raw, on the node's subject, as well as through the store.
	if err := evil.Conn().Publish("burla.grant.n-1", []byte(`{"spec":{"id":"`+forged.Spec.ID+`"},"workers":4}`)); err != nil {
		t.Fatal(err)
	}
	if err := evil.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	real := store.Grant{Spec: job.Spec{ID: job.NewID(time.Now(), "acme")}, Workers: 2}
	time.Sleep(200 * time.Millisecond) // the forged grants, had they crossed, would be first
	if err := ctl.PutGrant(ctx, "n-1", real); err != nil {
		t.Fatal(err)
	}
	select {
	case g := <-got:
		if g.Spec.ID != real.Spec.ID {
			t.Fatalf("the node was granted %s by a tenant", g.Spec.ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the control plane's grant did not reach the node")
	}
}
