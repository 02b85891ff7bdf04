package burla

import (
	"testing"

	"go.temporal.io/sdk/temporal"

	"github.com/burla-temporal/burla/activities"
	"github.com/burla-temporal/burla/names"
)

// Every error type a job workflow ends with becomes a kind a program can switch on.
func TestJobErrorKinds(t *testing.T) {
	for typ, want := range map[string]ErrorKind{
		names.ErrNoNodes:           KindNoNodes,
		names.ErrNoCompatibleNodes: KindNoCompatibleNodes,
		names.ErrAllNodesBusy:      KindAllNodesBusy,
		names.ErrNodesFailedToBoot: KindNodesFailedToBoot,
		names.ErrNodesLost:         KindNodesLost,
		names.ErrJobStalled:        KindJobStalled,
		names.ErrShuttingDown:      KindClusterShutdown,
		names.ErrVersionMismatch:   KindVersionMismatch,
		names.ErrTenantLimit:       KindTenantLimit,
		names.ErrNotYours:          KindUnauthorized,
		names.ErrUnknownFunction:   KindUnknownFunction,
		names.ErrBadBinary:         KindBadBinary,
		names.ErrClientGone:        KindClientGone,
		activities.ErrBadImage:     KindBadImage,
		"SomethingElse":            KindInternal,
	} {
		err := jobError("j-x", temporal.NewNonRetryableApplicationError("what happened; what to do", typ, nil))
		if !IsKind(err, want) {
			t.Errorf("%s: got %v; want kind %s", typ, err, want)
		}
		if e := err.(*Error); e.Msg != "what happened; what to do" || e.Job != "j-x" {
			t.Errorf("%s: %+v lost the message or the job", typ, e)
		}
	}
	if err := jobError("j-x", temporal.NewCanceledError()); !IsKind(err, KindCancelled) {
		t.Errorf("cancelled: got %v", err)
	}
}
