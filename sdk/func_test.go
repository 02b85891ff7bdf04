package burla

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/burla-temporal/burla/wire"
)

var (
	half = Func("sdk-test-half", func(ctx context.Context, x int) (int, error) {
		if x%2 != 0 {
			return 0, errors.New("odd input")
		}
		return x / 2, nil
	})
	_ = Func("sdk-test-panic", func(ctx context.Context, x int) (int, error) { panic("kaput") })
	_ = Func("sdk-test-chan", func(ctx context.Context, x int) (chan int, error) { return make(chan int), nil })
)

// TestServe drives worker mode as a container worker does: hello, then calls.
func TestServe(t *testing.T) {
	callsR, callsW := io.Pipe()
	resR, resW := io.Pipe()
	var stdout, stderr bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- serve(callsR, resW, "n0nce", &stdout, &stderr); resW.Close() }()

	r := wire.NewReader(resR)
	hello, err := r.ReadHello()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(hello.Functions, ","), "sdk-test-half") || hello.Version != wire.Version {
		t.Errorf("hello %+v; want version %d and sdk-test-half registered", hello, wire.Version)
	}
	w := wire.NewWriter(callsW)
	for _, tc := range []struct {
		fn, input  string
		out        string
		kind, text string
	}{
		{fn: "sdk-test-half", input: "8", out: "4"},
		{fn: "sdk-test-half", input: "7", kind: "error", text: "odd input"},
		{fn: "sdk-test-half", input: `"eight"`, kind: "decode", text: "decode input as int"},
		{fn: "sdk-test-panic", input: "1", kind: "panic", text: "panic: kaput"},
		{fn: "sdk-test-chan", input: "1", kind: "encode", text: "encode output chan int"},
		{fn: "no-such-function", input: "1", kind: "error", text: `"no-such-function" is not registered`},
	} {
		if err := w.WriteCall(wire.Call{Index: 3, Function: tc.fn, Input: []byte(tc.input)}); err != nil {
			t.Fatal(err)
		}
		res, err := r.ReadResult()
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case res.Index != 3:
			t.Errorf("%s(%s): result for input %d; want 3", tc.fn, tc.input, res.Index)
		case tc.kind == "" && (res.Err != nil || string(res.Output) != tc.out):
			t.Errorf("%s(%s) = %s, %+v; want %s", tc.fn, tc.input, res.Output, res.Err, tc.out)
		case tc.kind != "" && (res.Err == nil || res.Err.Kind != tc.kind || !strings.Contains(res.Err.Message, tc.text)):
			t.Errorf("%s(%s) error %+v; want kind %s containing %q", tc.fn, tc.input, res.Err, tc.kind, tc.text)
		}
		if tc.kind == "panic" && !strings.Contains(res.Err.Stack, "func_test.go") {
			t.Errorf("panic stack %q does not name the panicking function's file", res.Err.Stack)
		}
	}
	callsW.Close()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	marker := string(wire.Marker("n0nce"))
	if n := strings.Count(stdout.String(), marker); n != 6 {
		t.Errorf("%d end-of-call markers on stdout; want one per call (6)", n)
	}
	if n := strings.Count(stderr.String(), marker); n != 6 {
		t.Errorf("%d end-of-call markers on stderr; want one per call (6)", n)
	}
}

func TestFuncRefusesBadRegistrations(t *testing.T) {
	for name, register := range map[string]func(){
		"empty name": func() { Func("", func(context.Context, int) (int, error) { return 0, nil }) },
		"nil func":   func() { Func[int, int]("sdk-test-nil", nil) },
		"duplicate":  func() { Func("sdk-test-half", func(context.Context, int) (int, error) { return 0, nil }) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: Func did not panic", name)
				}
			}()
			register()
		}()
	}
	_ = half
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Option{FuncCPU(0), FuncRAM(-1), MaxParallelism(-2), InputTimeout(-1), Lease(0)} {
		if _, err := buildOptions([]Option{o}); err == nil {
			t.Errorf("option %#v accepted", o)
		}
	}
	o, err := buildOptions(nil)
	if err != nil || o.funcCPU != 1 {
		t.Errorf("defaults %+v, %v; want func_cpu 1", o, err)
	}
}

func TestCheckBinaryRefusesNonLinuxExecutables(t *testing.T) {
	_, err := checkBinary("func_test.go")
	if !IsKind(err, KindBadBinary) || !strings.Contains(err.Error(), "GOOS=linux GOARCH=amd64") {
		t.Errorf("checkBinary on a source file: %v; want BadBinary saying how to build one", err)
	}
}
