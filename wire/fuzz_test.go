package wire

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"runtime/metrics"
	"strings"
	"testing"
	"unicode/utf8"
)

// The fuzz targets below feed the Reader bytes a broken or hostile peer could send.
// Each checks that reading never panics, allocates in proportion to the bytes that
// arrived rather than to what a length prefix claims, fails only with ErrFrame or
// io.EOF, and that whatever it accepts survives a write and a read unchanged.
// Their seed corpora are in testdata/fuzz; scripts/fuzz.sh runs them.

// heapAllocated is the bytes this process has allocated on the heap so far. Large
// allocations, the ones a hostile length could cause, are counted at once.
func heapAllocated() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// allocLimit is the most reading n bytes may allocate: the Reader's buffer and one
// payload step for a frame whose bytes never came (with room to spare, as small
// allocations are counted a span at a time), and a small multiple of n.
func allocLimit(n int) uint64 { return 2*payloadStep + 32*uint64(n) }

// checkAllocs runs read, which reads data, and fails t if it allocated more than
// allocLimit(len(data)).
func checkAllocs(t *testing.T, data []byte, read func()) {
	t.Helper()
	before := heapAllocated()
	read()
	if got, limit := heapAllocated()-before, allocLimit(len(data)); got > limit {
		t.Fatalf("reading %d bytes (%x…) allocated %d bytes; want at most %d", len(data), data[:min(len(data), 16)], got, limit)
	}
}

// checkReadErr fails t unless err is one a Reader may return for bad input: io.EOF
// for a stream that ends between frames, ErrFrame for anything else. The two never
// go together: a peer reads io.EOF as a clean end, which a frame cut short is not.
func checkReadErr(t *testing.T, err error) {
	t.Helper()
	if errors.Is(err, io.EOF) == errors.Is(err, ErrFrame) {
		t.Fatalf("read error %v: io.EOF %v, ErrFrame %v; want exactly one", err, errors.Is(err, io.EOF), errors.Is(err, ErrFrame))
	}
}

// frame is a hand-made frame: a length header that may lie, a kind and a payload.
func frame(length uint32, kind byte, payload string) []byte {
	return append([]byte{byte(length >> 24), byte(length >> 16), byte(length >> 8), byte(length), kind}, payload...)
}

// honest is a frame whose header tells its length.
func honest(kind byte, payload string) []byte { return frame(uint32(1+len(payload)), kind, payload) }

// encoded returns what fn writes with a Writer.
func encoded(t testing.TB, fn func(w *Writer) error) []byte {
	var buf bytes.Buffer
	if err := fn(NewWriter(&buf)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func FuzzReadHello(f *testing.F) {
	f.Add(encoded(f, func(w *Writer) error {
		return w.WriteHello(Hello{Version: Version, Functions: []string{"double", "triple"}, GOOS: "linux", GOARCH: "amd64"})
	}))
	f.Add(frame(3, kindHello, "{}"))
	f.Add(frame(5, kindHello, "{}"))                  // cut short
	f.Add(frame(0xffffffff, kindHello, `{"version"`)) // claims 4 GiB
	f.Add(frame(9, kindHello, "{\"goos\":\"\xff\"}"))
	f.Add(frame(3, kindCall, "{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var h Hello
		var err error
		checkAllocs(t, data, func() { h, err = NewReader(bytes.NewReader(data)).ReadHello() })
		if err != nil {
			checkReadErr(t, err)
			return
		}
		for _, fn := range h.Functions {
			if len(fn) > MaxName {
				t.Fatalf("hello accepted a function name of %d bytes, over MaxName", len(fn))
			}
		}
		again := encoded(t, func(w *Writer) error { return w.WriteHello(h) })
		if len(again)-5 > MaxHello {
			return // JSON escapes may grow a hello accepted near the limit past it
		}
		got, err := NewReader(bytes.NewReader(again)).ReadHello()
		if err != nil || !reflect.DeepEqual(got, h) {
			t.Fatalf("hello %+v read back as %+v, %v", h, got, err)
		}
	})
}

func FuzzReadCall(f *testing.F) {
	f.Add(encoded(f, func(w *Writer) error {
		return w.WriteCall(Call{Index: 42, Function: "double", TimeoutMillis: 1500, Input: []byte("21")})
	}))
	two := encoded(f, func(w *Writer) error {
		if err := w.QueueCall(Call{Index: 0, Function: "f", Input: []byte(`{"a":1}`)}); err != nil {
			return err
		}
		return w.WriteCall(Call{Index: 1, Function: "f", TimeoutMillis: -1})
	})
	f.Add(two)
	f.Add(two[:len(two)-3])                             // second frame cut short
	f.Add(frame(0xffffffff, kindCall, "\x02\x00\x01f")) // claims 4 GiB
	f.Add(frame(MaxFrame, kindCall, "\x02\x00\x01f"))   // claims 1 GiB, within the limit
	f.Add(frame(5, kindCall, "\x01\x00\x01f"))          // negative index
	f.Add(frame(6, kindCall, "\x02\x00\xff\xff\x03"))   // function name longer than MaxName
	f.Add(frame(4, kindCall, "\x02\x00\x05"))           // function name past the frame
	f.Add(frame(7, kindCall, "\x02\x00\x02\xff\xfe\x00"))
	f.Add(frame(12, kindCall, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var calls []Call
		var err error
		checkAllocs(t, data, func() {
			r := NewReader(bytes.NewReader(data))
			for {
				var c Call
				if c, err = r.ReadCall(); err != nil {
					return
				}
				calls = append(calls, c)
			}
		})
		checkReadErr(t, err)
		for _, c := range calls {
			if c.Index < 0 || len(c.Function) > MaxName {
				t.Fatalf("accepted call %d to a function named with %d bytes", c.Index, len(c.Function))
			}
			checkCallRoundTrip(t, c)
		}
	})
}

// FuzzCallRoundTrip writes calls made from arbitrary values within the limits and
// checks that each reads back as written.
func FuzzCallRoundTrip(f *testing.F) {
	f.Add(int64(42), int64(1500), "double", []byte("21"))
	f.Add(int64(0), int64(0), "", []byte{})
	f.Add(int64(-1), int64(-7), "f\xff", []byte(nil))
	f.Add(int64(1<<62), int64(1<<40), strings.Repeat("n", MaxName+1), bytes.Repeat([]byte{0}, 1000))
	f.Fuzz(func(t *testing.T, index, timeout int64, function string, input []byte) {
		if index < 0 {
			index = ^index
		}
		checkCallRoundTrip(t, Call{Index: index, TimeoutMillis: timeout, Function: function[:min(len(function), MaxName)], Input: input})
	})
}

func checkCallRoundTrip(t *testing.T, c Call) {
	t.Helper()
	b := encoded(t, func(w *Writer) error { return w.WriteCall(c) })
	got, err := NewReader(bytes.NewReader(b)).ReadCall()
	if err != nil {
		t.Fatalf("call %+v read back: %v", c, err)
	}
	if got.Index != c.Index || got.TimeoutMillis != c.TimeoutMillis || got.Function != c.Function || !bytes.Equal(got.Input, c.Input) {
		t.Fatalf("call %+v read back as %+v", c, got)
	}
}

func FuzzReadResult(f *testing.F) {
	f.Add(encoded(f, func(w *Writer) error {
		if err := w.WriteResult(Result{Index: 42, Output: []byte("42")}); err != nil {
			return err
		}
		return w.WriteResult(Result{Index: 43, Err: &Error{Kind: "panic", Message: "boom", Stack: "goroutine 7"}})
	}))
	f.Add(frame(0xffffffff, kindResult, "\x02\x00")) // claims 4 GiB
	f.Add(frame(1<<24, kindResult, "\x02\x00"))      // claims 16 MiB, sends 2 bytes
	f.Add(frame(1, kindResult, ""))                  // no index
	f.Add(frame(3, kindResult, "\x02\x07"))          // bad status
	f.Add(frame(3, kindResult, "\x01\x00"))          // negative index
	f.Add(frame(7, kindResult, "\x02\x01null"))      // an error without a kind
	f.Add(frame(21, kindResult, "\x02\x01{\"kind\":\"\xff\xfe\"}"))
	f.Add(frame(4, kindHello, "\x02\x00x"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var results []Result
		var err error
		checkAllocs(t, data, func() {
			r := NewReader(bytes.NewReader(data))
			for {
				var res Result
				if res, err = r.ReadResult(); err != nil {
					return
				}
				results = append(results, res)
			}
		})
		checkReadErr(t, err)
		for _, res := range results {
			if res.Index < 0 || res.Err != nil && (res.Err.Kind == "" || len(res.Err.Kind) > MaxName) {
				t.Fatalf("accepted result %d with error %+v", res.Index, res.Err)
			}
			checkResultRoundTrip(t, res)
		}
	})
}

// FuzzResultRoundTrip writes results made from arbitrary values within the limits
// and checks that each reads back as written. An error's strings travel as JSON, so
// they are made valid UTF-8 first.
func FuzzResultRoundTrip(f *testing.F) {
	f.Add(int64(42), []byte("42"), false, "", "", "")
	f.Add(int64(43), []byte(nil), true, "panic", "boom", "goroutine 7 [running]:\n")
	f.Add(int64(-5), []byte("\xff"), true, "", "bad \xff utf-8 <&>", "\u2028")
	f.Fuzz(func(t *testing.T, index int64, output []byte, failed bool, kind, message, stack string) {
		if index < 0 {
			index = ^index
		}
		res := Result{Index: index, Output: output}
		if failed {
			kind = validUTF8(kind, MaxName)
			if kind == "" {
				kind = "error"
			}
			res = Result{Index: index, Err: &Error{Kind: kind, Message: validUTF8(message, len(message)), Stack: validUTF8(stack, len(stack))}}
		}
		checkResultRoundTrip(t, res)
	})
}

// validUTF8 returns s made valid UTF-8 and cut to at most n bytes at a rune boundary.
func validUTF8(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	for len(s) > n {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

func checkResultRoundTrip(t *testing.T, res Result) {
	t.Helper()
	b := encoded(t, func(w *Writer) error { return w.WriteResult(res) })
	got, err := NewReader(bytes.NewReader(b)).ReadResult()
	if err != nil {
		t.Fatalf("result %+v read back: %v", res, err)
	}
	if got.Index != res.Index || !bytes.Equal(got.Output, res.Output) || !reflect.DeepEqual(got.Err, res.Err) {
		t.Fatalf("result %+v (error %+v) read back as %+v (error %+v)", res, res.Err, got, got.Err)
	}
}
