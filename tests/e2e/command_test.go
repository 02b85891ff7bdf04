package e2e

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	burla "github.com/burla-temporal/burla/sdk"
)

// A function that is not Go: a shell command, each input on its stdin.
func TestCommand(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	double := burla.Command("", "sh", "-c", `read x; echo "doubling $x" >&2; echo $((x * 2))`)
	var mu sync.Mutex
	var lines []burla.LogLine
	out, err := burla.RemoteParallelMap(ctx, double, []string{"1", "2", "3"},
		append(opts(), burla.OnLog(func(l burla.LogLine) { mu.Lock(); lines = append(lines, l); mu.Unlock() }))...)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out, []string{"2", "4", "6"}) {
		t.Errorf("outputs %q; want [2 4 6]", out)
	}
	mu.Lock()
	for _, l := range lines {
		if want := []string{"1", "2", "3"}[l.Index]; l.Text != "doubling "+want || !l.Stderr {
			t.Errorf("input %d logged %q (stderr %v); want %q on stderr", l.Index, l.Text, l.Stderr, "doubling "+want)
		}
	}
	if len(lines) != 3 {
		t.Errorf("%d log lines; want one per input", len(lines))
	}
	mu.Unlock()

	fails := burla.Command("", "sh", "-c", `read x; if [ "$x" = b ]; then echo "no b here" >&2; exit 4; fi; echo ok`)
	_, err = burla.RemoteParallelMap(ctx, fails, []string{"a", "b", "c"}, opts()...)
	re := remoteError(t, err)
	if re.Index != 1 || re.Kind != "exit" || !strings.Contains(re.Message, "status 4") || !strings.Contains(re.Stack, "no b here") {
		t.Errorf("got %+v; want input 1's exit status 4 with its stderr", re)
	}
	checkHealthy(t)
}
