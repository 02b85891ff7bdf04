package containerworker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/burla-temporal/burla/containerworker"
	"github.com/burla-temporal/burla/wire"
)

// A worker reaches a cloud store with the token its agent handed it last
// (wire.OpToken): a request waits for one while there is none or the last has
// expired, and fails plainly when none comes.
func TestWorkerTakesItsAgentsTokens(t *testing.T) {
	tokens := containerworker.NewTokens()
	sv := serveConfig(t, containerworker.Config{Store: &memStore{}, Tokens: tokens})

	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := tokens.Token(short); err == nil || !strings.Contains(err.Error(), "node agent") {
		t.Fatalf("Token before the agent handed one: %v, want an error that names the node agent", err)
	}

	// A request waits for the token the agent is about to hand over.
	got := make(chan string, 1)
	go func() {
		v, _, err := tokens.Token(context.Background())
		if err != nil {
			v = err.Error()
		}
		got <- v
	}()
	time.Sleep(20 * time.Millisecond)
	sv.send(wire.Command{Op: wire.OpToken, Token: &wire.Token{Value: "tok-1", Expiry: time.Now().Add(time.Hour)}})
	if v := <-got; v != "tok-1" {
		t.Fatalf("waiting request got %q, want tok-1", v)
	}

	// The next token replaces it.
	sv.send(wire.Command{Op: wire.OpToken, Token: &wire.Token{Value: "tok-2", Expiry: time.Now().Add(time.Hour)}})
	waitFor(t, func() bool { v, _, _ := tokens.Token(context.Background()); return v == "tok-2" })

	// An expired token is never used: the request waits for the next.
	sv.send(wire.Command{Op: wire.OpToken, Token: &wire.Token{Value: "old", Expiry: time.Now().Add(-time.Second)}})
	short2, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	go func() {
		time.Sleep(300 * time.Millisecond)
		sv.send(wire.Command{Op: wire.OpToken, Token: &wire.Token{Value: "tok-3", Expiry: time.Now().Add(time.Hour)}})
	}()
	if v, _, err := tokens.Token(short2); err != nil || v != "tok-3" {
		t.Fatalf("after an expired token: %q, %v; want the next one, tok-3", v, err)
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5 s")
		}
	}
}
