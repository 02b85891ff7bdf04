package burla

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/burla-temporal/burla/store"
	"github.com/burla-temporal/burla/wire"
)

// Function is a registered function: a handle that RemoteParallelMap runs remotely.
type Function[In, Out any] struct {
	name string
	fn   func(context.Context, In) (Out, error)
	// command and image, for a function that is not Go (see Command).
	command []string
	image   string
	// dynamicIn and dynamicOut: the type holds interface values, whose integers
	// checkExact checks.
	dynamicIn, dynamicOut bool
}

// Command returns a function that is not Go: argv runs once per input on the
// cluster, with the input on its stdin; what it prints to stdout (less one trailing
// newline) is the output, what it prints to stderr is the call's log, and a non-zero
// exit fails the call. image names the image it runs in on nodes that run workers in
// containers; empty means the node's own environment. Nothing is registered and no
// program is shipped, so Command may be called anywhere.
func Command(image string, argv ...string) *Function[string, string] {
	if len(argv) == 0 || argv[0] == "" {
		panic("burla.Command: no command")
	}
	return &Function[string, string]{name: "command:" + argv[0], command: slices.Clone(argv), image: image}
}

// Name is the name the function was registered under.
func (f *Function[In, Out]) Name() string { return f.name }

// call decodes one input, runs the function and encodes its output, turning a panic
// into an error with the goroutine's stack.
func (f *Function[In, Out]) call(ctx context.Context, input []byte) (output []byte, werr *wire.Error) {
	var in In
	if err := json.Unmarshal(input, &in); err != nil {
		return nil, &wire.Error{Kind: store.KindDecode, Message: fmt.Sprintf("decode input as %T: %v", in, err)}
	}
	defer func() {
		if r := recover(); r != nil {
			output, werr = nil, &wire.Error{Kind: store.KindPanic, Message: fmt.Sprintf("panic: %v", r), Stack: string(debug.Stack())}
		}
	}()
	out, err := f.fn(ctx, in)
	if err != nil {
		var p *permanentError
		return nil, &wire.Error{Kind: store.KindError, Message: err.Error(), Stack: fmt.Sprintf("%+v", err), Permanent: errors.As(err, &p)}
	}
	if f.dynamicOut {
		if err := checkExact(reflect.ValueOf(&out).Elem(), "output"); err != nil {
			return nil, &wire.Error{Kind: store.KindEncode, Message: fmt.Sprintf("its output (%T) cannot be encoded as JSON faithfully: %v", out, err), Permanent: true}
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, &wire.Error{Kind: store.KindEncode, Message: fmt.Sprintf("its output (%T) cannot be encoded as JSON: %v", out, err)}
	}
	return b, nil
}

type callable interface {
	call(ctx context.Context, input []byte) ([]byte, *wire.Error)
}

// The registry is the one piece of package state: it must be complete before main
// runs, because a worker process serves whatever was registered by then.
var registry = struct {
	sync.Mutex
	funcs   map[string]callable
	mainRan bool
}{funcs: map[string]callable{}}

// Func registers fn under name and returns its handle. Call it in a package-level
// variable declaration so that the program in worker mode registers the same
// functions before Main runs; it panics on an empty or duplicate name, or when
// called after Main.
func Func[In, Out any](name string, fn func(context.Context, In) (Out, error)) *Function[In, Out] {
	if name == "" {
		panic("burla.Func: empty function name")
	}
	if fn == nil {
		panic(fmt.Sprintf("burla.Func(%q): nil function", name))
	}
	registry.Lock()
	defer registry.Unlock()
	if registry.mainRan {
		panic(fmt.Sprintf("burla.Func(%q) called after burla.Main: register functions in package-level var declarations so that worker processes register them too", name))
	}
	if _, dup := registry.funcs[name]; dup {
		panic(fmt.Sprintf("burla.Func: function %q registered twice", name))
	}
	f := &Function[In, Out]{name: name, fn: fn}
	var err error
	if f.dynamicIn, err = checkType(reflect.TypeFor[In]()); err != nil {
		panic(fmt.Sprintf("burla.Func(%q): its input type %v", name, err))
	}
	if f.dynamicOut, err = checkType(reflect.TypeFor[Out]()); err != nil {
		panic(fmt.Sprintf("burla.Func(%q): its output type %v", name, err))
	}
	registry.funcs[name] = f
	return f
}

func registeredNames() []string {
	registry.Lock()
	defer registry.Unlock()
	names := make([]string, 0, len(registry.funcs))
	for n := range registry.funcs {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func mainCalled() bool {
	registry.Lock()
	defer registry.Unlock()
	return registry.mainRan
}

// Main must be the first call in main. In a program started by a container worker it
// serves the registered functions and never returns; otherwise it returns at once.
func Main() {
	registry.Lock()
	registry.mainRan = true
	registry.Unlock()
	if os.Getenv(wire.EnvWorker) != "1" {
		return
	}
	if err := serve(os.NewFile(wire.CallFD, "burla-calls"), os.NewFile(wire.ResultFD, "burla-results"), os.Getenv(wire.EnvMarker), os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "burla worker: %v\n", err)
		os.Exit(70)
	}
	os.Exit(0)
}

// serve answers calls until the worker closes the call stream. stdout and stderr are
// where the function's own output goes, so that is where the end-of-call markers go.
func serve(calls io.Reader, results io.Writer, nonce string, stdout, stderr io.Writer) error {
	if nonce == "" {
		return errors.New("worker mode without " + wire.EnvMarker)
	}
	marker := wire.Marker(nonce)
	w := wire.NewWriter(results)
	r := wire.NewReader(calls)
	hello := wire.Hello{Version: wire.Version, Functions: registeredNames(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH}
	if err := w.WriteHello(hello); err != nil {
		return fmt.Errorf("write hello: %w", err)
	}
	for {
		c, err := r.ReadCall()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read call: %w", err)
		}
		res := wire.Result{Index: c.Index}
		registry.Lock()
		f := registry.funcs[c.Function]
		registry.Unlock()
		if f == nil {
			res.Err = &wire.Error{Kind: store.KindError, Message: fmt.Sprintf("function %q is not registered in this binary", c.Function)}
		} else {
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if c.TimeoutMillis > 0 {
				ctx, cancel = context.WithTimeout(ctx, time.Duration(c.TimeoutMillis)*time.Millisecond)
			}
			res.Output, res.Err = f.call(ctx, c.Input)
			cancel()
		}
		// The markers tell the worker where this call's output ends; they must be
		// written before the result so that the worker sees them once it has it.
		stdout.Write(marker)
		stderr.Write(marker)
		if err := w.WriteResult(res); err != nil {
			return fmt.Errorf("write result of input %d: %w", c.Index, err)
		}
	}
}

// Permanent marks err, returned by a function, as a failure that running the
// call again would repeat (bad input, say): the call fails at once, whatever
// Retries asks. errors.Is and errors.As see through it; nil stays nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }
