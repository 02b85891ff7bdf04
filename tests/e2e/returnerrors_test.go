package e2e

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	burla "github.com/burla-temporal/burla/sdk"
)

// TestReturnErrors runs jobs whose calls fail in each way a call can, with
// ReturnErrors: every other input still runs, and each failure comes back with its
// index.
func TestReturnErrors(t *testing.T) {
	for _, c := range []struct {
		name    string
		f       *burla.Function[int, int]
		in      []int
		want    []int
		index   int
		kind    string
		message string
	}{
		{"ReturnedError", failing, []int{1, 2, 3, 4}, []int{1, 2, 0, 4}, 2, "error", "three is not allowed"},
		{"Panic", panicky, []int{0, 1, 2, 3}, []int{0, 1, 0, 3}, 2, "panic", "nil map"},
		{"Exit", exiting, []int{0, 1, 2}, []int{0, 0, 2}, 1, "exit", "status 3"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var jobID string
			outs, err := burla.RemoteParallelMap(testCtx(t, time.Minute), c.f, c.in,
				opts(burla.ReturnErrors(), burla.OnStart(func(id string) { jobID = id }))...)
			var ie *burla.InputErrors
			if !errors.As(err, &ie) || len(ie.Errors) != 1 || ie.Inputs != len(c.in) {
				t.Fatalf("error %v (%T); want an *InputErrors with one failed input of %d", err, err, len(c.in))
			}
			re := ie.Errors[0]
			if re.Index != c.index || re.Kind != c.kind || !strings.Contains(re.Message, c.message) {
				t.Errorf("failed input %+v; want input %d's %s", re, c.index, c.kind)
			}
			if !slices.Equal(outs, c.want) {
				t.Errorf("outputs %v; want %v (zero where the call failed)", outs, c.want)
			}
			var one *burla.RemoteError
			if !errors.As(err, &one) || one.Index != c.index {
				t.Errorf("errors.As finds no *RemoteError for input %d in %v", c.index, err)
			}
			// The job ran every input: it succeeded, with the failures its results.
			waitForStatus(t, jobID, enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED)
		})
	}
	t.Run("Stream", func(t *testing.T) {
		in := make([]int, 12)
		for i := range in {
			in[i] = i % 4 // inputs 3, 7 and 11 fail
		}
		var ok, failed []int
		for r, err := range burla.Stream(testCtx(t, time.Minute), failing, in, opts(burla.ReturnErrors())...) {
			var re *burla.RemoteError
			switch {
			case errors.As(err, &re):
				failed = append(failed, re.Index)
			case err != nil:
				t.Fatalf("stream: %v", err)
			default:
				ok = append(ok, r.Index)
			}
		}
		slices.Sort(failed)
		if fmt.Sprint(failed) != "[3 7 11]" || len(ok) != 9 {
			t.Errorf("failed %v and %d good; want [3 7 11] and 9", failed, len(ok))
		}
	})
	checkHealthy(t)
}
