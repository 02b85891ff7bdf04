package containerworker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/burla-temporal/burla/wire"
)

// TokenWait bounds how long a store request waits for its node agent to hand the
// worker a token it can use (the agent hands one over as the worker starts, and
// the next well before the last expires).
const TokenWait = time.Minute

// Tokens holds the access token the worker's node agent last handed it
// (wire.OpToken): on a cloud VM the worker reaches a cloud store with it
// (storeurl.Credentials.Token), as the metadata server that hands tokens out is
// closed to the worker and to the tenants' code it runs. The worker is not
// dumpable, so that code cannot read the token from its memory either.
type Tokens struct {
	mu   sync.Mutex
	tok  wire.Token
	next chan struct{} // closed, and replaced, by each Set
}

// NewTokens returns a Tokens that holds no token yet.
func NewTokens() *Tokens { return &Tokens{next: make(chan struct{})} }

// Set makes tok the token that Token returns.
func (t *Tokens) Set(tok wire.Token) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.tok = tok
	close(t.next)
	t.next = make(chan struct{})
}

// Token returns the latest token if it has not expired, and otherwise waits for
// the next, until ctx ends or TokenWait passes.
func (t *Tokens) Token(ctx context.Context) (string, time.Time, error) {
	var timeout *time.Timer // made only when a request has to wait
	for {
		t.mu.Lock()
		tok, next := t.tok, t.next
		t.mu.Unlock()
		if tok.Value != "" && time.Now().Before(tok.Expiry) {
			return tok.Value, tok.Expiry, nil
		}
		if timeout == nil {
			timeout = time.NewTimer(TokenWait)
			defer timeout.Stop()
		}
		select {
		case <-next:
		case <-ctx.Done():
			return "", time.Time{}, fmt.Errorf("wait for an access token from the node agent: %w", context.Cause(ctx))
		case <-timeout.C:
			if tok.Value == "" {
				return "", time.Time{}, fmt.Errorf("the node agent handed this worker no access token for the store in %v", TokenWait)
			}
			return "", time.Time{}, fmt.Errorf("the node agent's last access token for the store expired at %s and none came in %v", tok.Expiry.UTC().Format(time.RFC3339), TokenWait)
		}
	}
}
