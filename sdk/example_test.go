package burla_test

// The examples need a running cluster (burla dev), so go test compiles them and
// does not run them; tests/e2e runs the same calls against a real cluster.

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	burla "github.com/burla-temporal/burla/sdk"
)

// Functions are registered at package level, so that the program, started in
// worker mode on a node, has them before burla.Main serves them.
var (
	square = burla.Func("example-square", func(ctx context.Context, x int) (int, error) {
		fmt.Println("squaring", x) // streams back to the caller's terminal
		return x * x, nil
	})
	checkPositive = burla.Func("example-check-positive", func(ctx context.Context, x int) (int, error) {
		if x < 0 {
			return 0, fmt.Errorf("%d is negative", x)
		}
		return x, nil
	})
	render = burla.Func("example-render", func(ctx context.Context, name string) (string, error) {
		// A call writes large outputs into the tenant's shared directory and
		// returns their names; the client downloads them.
		path := filepath.Join(burla.SharedDir(), "frames", name+".txt")
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return "", err
		}
		return "frames/" + name + ".txt", os.WriteFile(path, []byte(strings.Repeat(name, 1<<20)), 0o644)
	})
)

// A program's main calls burla.Main first: in a worker it serves the functions
// and never returns; in the client it returns at once.
func Example() {
	burla.Main()
	out, err := burla.RemoteParallelMap(context.Background(), square, []int{1, 2, 3})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(out) // [1 4 9], in input order
}

// Each call gets its own worker with 2 CPUs and 4 GB; a call that fails comes
// back as a *RemoteError with the input's index and the remote stack.
func ExampleRemoteParallelMap() {
	ctx := context.Background()
	out, err := burla.RemoteParallelMap(ctx, checkPositive, []int{4, -1, 7},
		burla.FuncCPU(2), burla.FuncRAM(4), burla.MaxParallelism(100), burla.InputTimeout(time.Minute))
	var re *burla.RemoteError
	if errors.As(err, &re) {
		fmt.Printf("input %d failed (%s): %s\n%s", re.Index, re.Kind, re.Message, re.Stack)
		return
	}
	if err != nil {
		log.Fatal(err) // a *burla.Error: the job could not run (see ErrorKind)
	}
	fmt.Println(out)
}

// Stream yields each result as it is stored, not in input order, so that a long
// job's first outputs can be used at once.
func ExampleStream() {
	ctx := context.Background()
	for r, err := range burla.Stream(ctx, square, []int{1, 2, 3, 4}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("input %d: %d\n", r.Index, r.Output)
	}
}

// With ReturnErrors a job runs every input even when some calls fail: the
// outputs of the others come back, and the failures as one *InputErrors.
func ExampleReturnErrors() {
	out, err := burla.RemoteParallelMap(context.Background(), checkPositive, []int{1, -2, 3, -4}, burla.ReturnErrors())
	var ie *burla.InputErrors
	if errors.As(err, &ie) {
		for _, re := range ie.Errors {
			fmt.Printf("input %d: %s\n", re.Index, re.Message)
		}
	}
	fmt.Println(out) // the failed inputs' outputs are the zero value
}

// A detached job outlives its client: Submit returns once the inputs are
// uploaded, and any program may attach to the job by its ID later.
func ExampleSubmit() {
	ctx := context.Background()
	j, err := burla.Submit(ctx, square, []int{1, 2, 3}, burla.Detach())
	if err != nil {
		log.Fatal(err)
	}
	id := j.ID() // keep it: `burla jobs` lists it as well

	later, err := burla.Attach[int](ctx, id)
	if err != nil {
		log.Fatal(err)
	}
	out, err := later.Outputs(ctx)
	fmt.Println(out, err)
}

// IsKind tells what went wrong outside the function: here, no cluster answered.
func ExampleIsKind() {
	_, err := burla.RemoteParallelMap(context.Background(), square, []int{1})
	switch {
	case burla.IsKind(err, burla.KindNoCluster):
		fmt.Println("start one with: burla dev")
	case burla.IsKind(err, burla.KindNoCompatibleNodes):
		fmt.Println("no node has what the job asks for:", err)
	case err != nil:
		log.Fatal(err)
	}
}

// A function that is not Go: the command runs once per input, with the input on
// its stdin, in the image's container where nodes run containers.
func ExampleCommand() {
	wc := burla.Command("debian:bookworm", "wc", "-w")
	out, err := burla.RemoteParallelMap(context.Background(), wc, []string{"one two", "three"})
	fmt.Println(out, err) // [2 1] <nil>
}

// Calls write large outputs into the shared directory (see SharedDir); the
// client downloads them once it has the calls' results.
func ExampleSharedDir() {
	ctx := context.Background()
	c, err := burla.Dial(ctx, burla.ConfigFromEnv())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	names, err := burla.RemoteParallelMap(ctx, render, []string{"a", "b"}, burla.OnCluster(c))
	if err != nil {
		log.Fatal(err)
	}
	for _, name := range names {
		if err := c.Shared().Download(ctx, name, filepath.Base(name)); err != nil {
			log.Fatal(err)
		}
	}
}

// A program that runs many jobs dials the cluster once; ConfigFromEnv reads
// BURLA_TEMPORAL_ADDRESS, BURLA_STORE_URL, BURLA_API_KEY and the TLS variables.
func ExampleDial() {
	ctx := context.Background()
	c, err := burla.Dial(ctx, burla.ConfigFromEnv())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	for _, in := range [][]int{{1, 2}, {3, 4}} {
		out, err := burla.RemoteParallelMap(ctx, square, in, burla.OnCluster(c), burla.Spinner(false))
		fmt.Println(out, err)
	}
}

// OnLog takes the lines calls print, with their input's index, instead of the
// terminal.
func ExampleOnLog() {
	_, err := burla.RemoteParallelMap(context.Background(), square, []int{1, 2},
		burla.OnLog(func(l burla.LogLine) {
			stream := "stdout"
			if l.Stderr {
				stream = "stderr"
			}
			log.Printf("input %d %s: %s", l.Index, stream, l.Text)
		}))
	if err != nil {
		log.Fatal(err)
	}
}
