package burla

import (
	"testing"

	"go.temporal.io/sdk/temporal"

	"github.com/burla-temporal/burla/control"
)

// Every error type a job workflow ends with becomes a kind a program can switch on.
func TestJobErrorKinds(t *testing.T) {
	for typ, want := range map[control.ErrorType]ErrorKind{
		control.ErrNoNodes:           KindNoNodes,
		control.ErrNoCompatibleNodes: KindNoCompatibleNodes,
		control.ErrAllNodesBusy:      KindAllNodesBusy,
		control.ErrNodesFailedToBoot: KindNodesFailedToBoot,
		control.ErrNodesLost:         KindNodesLost,
		control.ErrJobStalled:        KindJobStalled,
		control.ErrShuttingDown:      KindClusterShutdown,
		control.ErrVersionMismatch:   KindVersionMismatch,
		control.ErrTenantLimit:       KindTenantLimit,
		control.ErrNotYours:          KindUnauthorized,
		control.ErrUnknownFunction:   KindUnknownFunction,
		control.ErrBadBinary:         KindBadBinary,
		control.ErrClientGone:        KindClientGone,
		control.ErrBadImage:          KindBadImage,
		"SomethingElse":              KindInternal,
	} {
		err := jobError("j-x", typ.New("what happened; what to do", nil))
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
