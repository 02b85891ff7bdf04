// Package e2e runs the SDK against a real `burla dev` cluster: an embedded Temporal
// server, embedded NATS JetStream, node agents and container workers as processes.
// The test binary is also the user program the cluster runs: TestMain calls
// burla.Main first, so in a container worker it serves the functions below.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/tests/clustertest"
)

var dev *clustertest.Dev

func TestMain(m *testing.M) {
	burla.Main()
	if os.Getenv("E2E_VANISHING_CLIENT") == "1" {
		os.Exit(vanishingClient())
	}
	ctx := context.Background()
	var err error
	// The blob collector runs every 2 s, so that TestLargeInputsAndOutputs sees it.
	dev, err = clustertest.Start(ctx, clustertest.Options{Nodes: 2, CPUs: 2, CollectEvery: 2 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: start cluster:", err)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		if err := replayCluster(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL: e2e:", err)
			code = 1
		}
	}
	dev.Keep = code != 0
	if err := dev.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: stop cluster:", err)
		code = 1
	}
	os.Exit(code)
}

// The functions the cluster runs. They are package-level so that the program in
// worker mode registers them before burla.Main serves them.
var (
	double = burla.Func("double", func(ctx context.Context, x int) (int, error) {
		fmt.Println(x)
		return 2 * x, nil
	})
	square = burla.Func("square", func(ctx context.Context, x int) (int, error) {
		return x * x, nil
	})
	chatty = burla.Func("chatty", func(ctx context.Context, x int) (string, error) {
		fmt.Printf("input %d line one\n", x)
		fmt.Fprintf(os.Stderr, "input %d on stderr\n", x)
		fmt.Printf("input %d no newline", x)
		return strconv.Itoa(x), nil
	})
	failing = burla.Func("failing", func(ctx context.Context, x int) (int, error) {
		if x == 3 {
			return 0, fmt.Errorf("three is not allowed")
		}
		return x, nil
	})
	panicky = burla.Func("panicky", func(ctx context.Context, x int) (int, error) {
		if x == 2 {
			var m map[string]int
			m["boom"] = 1 // a nil-map write: a real runtime panic
		}
		return x, nil
	})
	exiting = burla.Func("exiting", func(ctx context.Context, x int) (int, error) {
		if x == 1 {
			fmt.Println("about to exit")
			os.Exit(3)
		}
		return x, nil
	})
	hanging = burla.Func("hanging", func(ctx context.Context, x int) (int, error) {
		if x == 0 {
			time.Sleep(time.Hour) // ignores its context too
		}
		return x, nil
	})
	sleepy = burla.Func("sleepy", func(ctx context.Context, x int) (int, error) {
		time.Sleep(20 * time.Millisecond)
		return x, nil
	})
	// nap sleeps x milliseconds.
	nap = burla.Func("nap", func(ctx context.Context, x int) (int, error) {
		time.Sleep(time.Duration(x) * time.Millisecond)
		return x, nil
	})
	floats  = burla.Func("floats", func(ctx context.Context, x float64) (float64, error) { return x, nil })
	echoAny = burla.Func("echoAny", func(ctx context.Context, x map[string]any) (map[string]any, error) { return x, nil })
	// clientOnly exists in the caller but not in the worker: the worker's registry
	// lacks it, as when a function is registered conditionally.
	clientOnly = registerClientOnly()
)

func registerClientOnly() *burla.Function[int, int] {
	if os.Getenv("BURLA_WORKER") == "1" {
		return nil
	}
	return burla.Func("clientOnly", func(ctx context.Context, x int) (int, error) { return x, nil })
}

func opts(extra ...burla.Option) []burla.Option {
	return append([]burla.Option{burla.OnCluster(dev.Cluster), burla.Spinner(false), burla.OnLog(func(burla.LogLine) {})}, extra...)
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// checkHealthy runs a good job, as every bad-input test does after its bad job.
func checkHealthy(t *testing.T) {
	t.Helper()
	out, err := burla.RemoteParallelMap(testCtx(t, time.Minute), square, []int{1, 2, 3, 4, 5}, opts()...)
	if err != nil {
		t.Fatalf("good job after a bad one: %v", err)
	}
	if fmt.Sprint(out) != "[1 4 9 16 25]" {
		t.Fatalf("good job after a bad one = %v; want [1 4 9 16 25]", out)
	}
}

func remoteError(t *testing.T, err error) *burla.RemoteError {
	t.Helper()
	var re *burla.RemoteError
	if !errors.As(err, &re) {
		t.Fatalf("error %v (%T); want a *burla.RemoteError", err, err)
	}
	return re
}

var (
	length = burla.Func("length", func(ctx context.Context, s string) (int, error) { return len(s), nil })
	repeat = burla.Func("repeat", func(ctx context.Context, n int) (string, error) { return strings.Repeat("x", n), nil })
)
