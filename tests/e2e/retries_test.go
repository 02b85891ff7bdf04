package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	burla "github.com/burla-temporal/burla/sdk"
)

// attempt is an input that knows how often it was tried: Run names the test
// run, so that each run's inputs start afresh.
type attempt struct {
	Run string
	X   int
}

// tries counts the calls of in, in a file of the worker's temporary directory,
// which outlives the program (a retry after an exit runs in a new one), and
// returns this call's number, from 1.
func tries(in attempt) int {
	mark := filepath.Join(os.TempDir(), fmt.Sprintf("burla-e2e-%s-%d", in.Run, in.X))
	b, _ := os.ReadFile(mark)
	n := len(b) + 1
	os.WriteFile(mark, append(b, '.'), 0o600)
	return n
}

var (
	// flaky fails each odd input's first attempt with an error and its second by
	// exiting; the third succeeds.
	flaky = burla.Func("flaky", func(ctx context.Context, in attempt) (int, error) {
		if in.X%2 == 0 {
			return in.X * 10, nil
		}
		switch tries(in) {
		case 1:
			return 0, fmt.Errorf("input %d: first attempt fails", in.X)
		case 2:
			fmt.Println("second attempt exits")
			os.Exit(7)
		}
		return in.X * 10, nil
	})
	// refusing fails each odd input with a permanent error, and says so if it
	// was called again.
	refusing = burla.Func("refusing", func(ctx context.Context, in attempt) (int, error) {
		if in.X%2 == 0 {
			return in.X, nil
		}
		if n := tries(in); n > 1 {
			return 0, fmt.Errorf("called %d times for a permanent error", n)
		}
		return 0, burla.Permanent(errors.New("odd inputs are refused"))
	})
)

func attempts(run string, n int) []attempt {
	in := make([]attempt, n)
	run = fmt.Sprintf("%s-%d", run, time.Now().UnixNano())
	for i := range in {
		in[i] = attempt{Run: run, X: i}
	}
	return in
}

// Retries runs a failed call again, after an error and after its program
// exited, and keeps the failures of its earlier attempts in its result; a call
// out of attempts fails with them; a permanent error is not retried.
func TestRetries(t *testing.T) {
	t.Run("RecoverAfterErrorAndExit", func(t *testing.T) {
		in := attempts("recover", 6)
		start := time.Now()
		var earlier [6][]*burla.RemoteError
		var outs [6]int
		for r, err := range burla.Stream(testCtx(t, 2*time.Minute), flaky, in, opts(burla.Retries(2), burla.RetryBackoff(100*time.Millisecond))...) {
			if err != nil {
				t.Fatalf("input %d: %v", r.Index, err)
			}
			outs[r.Index], earlier[r.Index] = r.Output, r.Earlier
		}
		took := time.Since(start)
		for i := range in {
			if outs[i] != i*10 {
				t.Errorf("input %d: output %d; want %d", i, outs[i], i*10)
			}
			if i%2 == 0 {
				if earlier[i] != nil {
					t.Errorf("input %d succeeded at once, yet has earlier failures %v", i, earlier[i])
				}
				continue
			}
			e := earlier[i]
			if len(e) != 2 || e[0].Kind != "error" || !strings.Contains(e[0].Message, "first attempt fails") || e[0].Index != i ||
				e[1].Kind != "exit" || !strings.Contains(e[1].Message, "status 7") {
				t.Errorf("input %d: earlier failures %s; want its error, then its exit", i, describe(e))
			}
		}
		// Two rounds of retries: 100 ms, then 200 ms.
		if took < 300*time.Millisecond {
			t.Errorf("the job took %v; its retries alone wait 300 ms", took)
		}
	})

	t.Run("OutOfAttempts", func(t *testing.T) {
		in := attempts("out", 4)
		outs, err := burla.RemoteParallelMap(testCtx(t, 2*time.Minute), flaky, in, opts(burla.Retries(1), burla.RetryBackoff(10*time.Millisecond), burla.ReturnErrors())...)
		var ie *burla.InputErrors
		if !errors.As(err, &ie) || len(ie.Errors) != 2 {
			t.Fatalf("error %v; want the two odd inputs failed", err)
		}
		for _, re := range ie.Errors {
			if re.Kind != "exit" || len(re.Earlier) != 1 || re.Earlier[0].Kind != "error" ||
				!strings.Contains(re.Error(), fmt.Sprintf("input %d failed on the cluster on each of its 2 attempts; the last (exit)", re.Index)) {
				t.Errorf("input %d: %v, earlier %s; want its exit, after its error", re.Index, re, describe(re.Earlier))
			}
		}
		if outs[0] != 0 || outs[2] != 20 {
			t.Errorf("outputs %v", outs)
		}
	})

	t.Run("PermanentIsNotRetried", func(t *testing.T) {
		in := attempts("permanent", 4)
		_, err := burla.RemoteParallelMap(testCtx(t, time.Minute), refusing, in, opts(burla.Retries(3), burla.RetryBackoff(10*time.Millisecond), burla.ReturnErrors())...)
		var ie *burla.InputErrors
		if !errors.As(err, &ie) || len(ie.Errors) != 2 {
			t.Fatalf("error %v; want the two odd inputs failed", err)
		}
		for _, re := range ie.Errors {
			if re.Message != "odd inputs are refused" || re.Earlier != nil {
				t.Errorf("input %d: %v, earlier %s; want its permanent error, at its first attempt", re.Index, re, describe(re.Earlier))
			}
		}
	})

	t.Run("FailsFastWithoutReturnErrors", func(t *testing.T) {
		in := attempts("fast", 2)
		_, err := burla.RemoteParallelMap(testCtx(t, time.Minute), flaky, in, opts(burla.Retries(1), burla.RetryBackoff(10*time.Millisecond))...)
		var re *burla.RemoteError
		if !errors.As(err, &re) || re.Index != 1 || len(re.Earlier) != 1 {
			t.Fatalf("error %v; want input 1's failure after one retry", err)
		}
	})
}

func describe(es []*burla.RemoteError) string {
	var s []string
	for _, e := range es {
		s = append(s, e.Kind+": "+e.Message)
	}
	return fmt.Sprintf("%q", s)
}
