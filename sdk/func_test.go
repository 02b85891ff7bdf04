package burla

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	// Its type is any: a channel in it fails only once it is returned.
	_ = Func("sdk-test-chan", func(ctx context.Context, x int) (any, error) { return make(chan int), nil })
	_ = Func("sdk-test-big", func(ctx context.Context, x int) (any, error) { return map[string]any{"id": uint64(1<<53 + 1)}, nil })
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
		{fn: "sdk-test-chan", input: "1", kind: "encode", text: "output (chan int) cannot be encoded as JSON"},
		{fn: "sdk-test-big", input: "1", kind: "encode", text: "its output (map[string]interface {}) cannot be encoded as JSON faithfully: output[id] holds the integer 9007199254740993 in an interface value"},
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
	if n := strings.Count(stdout.String(), marker); n != 7 {
		t.Errorf("%d end-of-call markers on stdout; want one per call (7)", n)
	}
	if n := strings.Count(stderr.String(), marker); n != 7 {
		t.Errorf("%d end-of-call markers on stderr; want one per call (7)", n)
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
	for _, o := range []Option{FuncCPU(0), FuncRAM(-1), MaxParallelism(-2), InputTimeout(-1), Lease(0), Retries(-1), Retries(101), RetryBackoff(-1), RetryBackoff(2 * time.Minute)} {
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
	dir := t.TempDir()
	file := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		name string
		path string
		want string // in the error; empty: no error
	}{
		{"linux/amd64", file("amd64", elfHeader(elf.ET_EXEC, elf.ELFOSABI_NONE, elf.EM_X86_64)), ""},
		{"linux/amd64 PIE", file("pie", elfHeader(elf.ET_DYN, elf.ELFOSABI_NONE, elf.EM_X86_64)), ""},
		{"linux/arm64", file("arm64", elfHeader(elf.ET_EXEC, elf.ELFOSABI_NONE, elf.EM_AARCH64)), "is built for linux/arm64; cluster nodes run linux/amd64"},
		{"freebsd/amd64", file("freebsd", elfHeader(elf.ET_EXEC, elf.ELFOSABI_FREEBSD, elf.EM_X86_64)), "is built for freebsd, not linux"},
		{"object file", file("obj", elfHeader(elf.ET_REL, elf.ELFOSABI_NONE, elf.EM_X86_64)), "is not an executable"},
		{"windows", file("win.exe", []byte("MZ\x90\x00 and more")), "is a Windows executable"},
		{"macOS", file("mac", []byte("\xcf\xfa\xed\xfe and more")), "is a macOS executable"},
		{"script", file("run.sh", []byte("#!/bin/sh\necho hi\n")), "is a script"},
		{"source file", "func_test.go", "is not a linux executable"},
		{"missing", filepath.Join(dir, "nothing-here"), "read executable"},
	} {
		_, err := checkBinary(c.path)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v; want it accepted", c.name, err)
		case c.want == "":
		case !IsKind(err, KindBadBinary) || !strings.Contains(err.Error(), c.want):
			t.Errorf("%s: error %v; want BadBinary saying %q", c.name, err, c.want)
		case c.name != "missing" && !strings.Contains(err.Error(), "GOOS=linux GOARCH=amd64 CGO_ENABLED=0 go build"):
			t.Errorf("%s: error %v; want it to say how to build one that runs", c.name, err)
		}
	}
}

// elfHeader is a 64-bit little-endian ELF file with no sections or segments.
func elfHeader(typ elf.Type, abi elf.OSABI, machine elf.Machine) []byte {
	h := elf.Header64{Type: uint16(typ), Machine: uint16(machine), Version: uint32(elf.EV_CURRENT), Ehsize: 64}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	h.Ident[elf.EI_OSABI] = byte(abi)
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, h)
	return b.Bytes()
}

// Permanent marks a function's error so that the worker does not retry the
// call; errors.Is and errors.As see through it.
func TestPermanent(t *testing.T) {
	base := errors.New("bad input")
	f := &Function[int, int]{name: "perm", fn: func(_ context.Context, x int) (int, error) {
		if x == 1 {
			return 0, fmt.Errorf("input %d: %w", x, Permanent(base))
		}
		return 0, base
	}}
	_, werr := f.call(context.Background(), []byte("1"))
	if werr == nil || !werr.Permanent || werr.Message != "input 1: bad input" {
		t.Errorf("a wrapped permanent error: %+v; want it marked permanent, its message unchanged", werr)
	}
	if _, werr := f.call(context.Background(), []byte("2")); werr == nil || werr.Permanent {
		t.Errorf("a plain error: %+v; want it not permanent", werr)
	}
	if !errors.Is(Permanent(base), base) || Permanent(nil) != nil {
		t.Error("Permanent hides its error from errors.Is, or makes nil an error")
	}
}
