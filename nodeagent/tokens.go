package nodeagent

import (
	"context"
	"time"

	"github.com/burla-temporal/burla/wire"
)

// TokenEvery is how often the agent asks for the workers' access token and hands
// it to every worker (Config.WorkerTokens); after a failed ask, it asks again
// every tokenRetry.
const (
	TokenEvery = 30 * time.Second
	tokenRetry = 5 * time.Second
)

// feedTokens asks tokens for the workers' access token every `every` (TokenEvery)
// until ctx ends, and hands it to every worker the pool has; keep hands the latest
// to each worker it starts (handToken).
func (p *pool) feedTokens(ctx context.Context, tokens func(context.Context) (string, time.Time, error), every time.Duration) {
	failed := false
	for {
		wait := every
		v, expiry, err := tokens(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			// The workers' last token serves until it expires; their store
			// requests wait for the next (containerworker.TokenWait).
			p.log.Warn("could not get the workers' access token for the store; asking again", "error", err)
			failed, wait = true, tokenRetry
		default:
			if failed {
				p.log.Info("got the workers' access token for the store again")
				failed = false
			}
			p.mu.Lock()
			p.token = wire.Token{Value: v, Expiry: expiry}
			for _, s := range p.slots {
				if s.w != nil {
					p.handToken(s.w)
				}
			}
			p.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// handToken hands w the workers' latest access token, if there is one; p.mu is
// held.
func (p *pool) handToken(w *workerProc) {
	if p.token.Value == "" || w.retired {
		return
	}
	tok := p.token
	if err := w.enc.Encode(wire.Command{Op: wire.OpToken, Token: &tok}); err != nil {
		p.log.Warn("could not hand a worker its access token", "error", err)
	}
}
