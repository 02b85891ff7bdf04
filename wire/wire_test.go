package wire

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

func TestFramesRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	hello := Hello{Version: Version, Functions: []string{"double", "triple"}, GOOS: "linux", GOARCH: "amd64"}
	call := Call{Index: 42, Function: "double", TimeoutMillis: 1500, Input: []byte("21")}
	ok := Result{Index: 42, Output: []byte("42")}
	failed := Result{Index: 43, Err: &Error{Kind: "panic", Message: "boom", Stack: "goroutine 7"}}
	if err := w.WriteHello(hello); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{w.WriteCall(call), w.WriteResult(ok), w.WriteResult(failed)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	r := NewReader(&buf)
	if got, err := r.ReadHello(); err != nil || !reflect.DeepEqual(got, hello) {
		t.Errorf("hello = %+v, %v; want %+v", got, err, hello)
	}
	if got, err := r.ReadCall(); err != nil || !reflect.DeepEqual(got, call) {
		t.Errorf("call = %+v, %v; want %+v", got, err, call)
	}
	if got, err := r.ReadResult(); err != nil || !reflect.DeepEqual(got, ok) {
		t.Errorf("result = %+v, %v; want %+v", got, err, ok)
	}
	if got, err := r.ReadResult(); err != nil || !reflect.DeepEqual(got, failed) {
		t.Errorf("result = %+v, %v; want %+v", got, err, failed)
	}
	if _, err := r.ReadResult(); !errors.Is(err, io.EOF) {
		t.Errorf("read past the end: %v; want io.EOF", err)
	}
}

func TestReaderRejectsBadFrames(t *testing.T) {
	readHello := func(r *Reader) error { _, err := r.ReadHello(); return err }
	readCall := func(r *Reader) error { _, err := r.ReadCall(); return err }
	readResult := func(r *Reader) error { _, err := r.ReadResult(); return err }
	longName := strings.Repeat("f", MaxName+1)
	for _, tc := range []struct {
		name string
		read func(*Reader) error
		b    []byte
		want string // in the error
	}{
		{"wrong kind", readResult, frame(2, kindCall, "\x00"), "kind 'C', want 'R'"},
		{"zero length", readResult, frame(0, kindResult, ""), "length 0"},
		{"huge length", readResult, frame(0x7fffffff, kindResult, ""), "limit (MaxFrame)"},
		{"short header", readResult, []byte{0, 0, 0}, "header cut short"},
		{"short body", readResult, frame(9, kindResult, "\x01"), "cut short"},
		{"header alone", readResult, frame(9, kindResult, ""), "cut short: unexpected EOF"},
		{"empty result", readResult, frame(1, kindResult, ""), "index and status missing"},
		{"negative result index", readResult, frame(3, kindResult, "\x01\x00"), "result index -1 is negative"},
		{"bad status", readResult, frame(3, kindResult, "\x02\x07"), "status 7"},
		{"error without a kind", readResult, frame(7, kindResult, "\x02\x01null"), "error kind of 0 bytes"},
		{"error kind too long", readResult, honest(kindResult, "\x02\x01{\"kind\":\""+longName+"\"}"), "error kind of 1025 bytes"},
		{"negative call index", readCall, frame(5, kindCall, "\x01\x00\x01f"), "call index -1 is negative"},
		{"function name too long", readCall, frame(6, kindCall, "\x02\x00\x81\x08f"), "function name of 1025 bytes exceeds the 1024-byte limit"},
		{"function name past the frame", readCall, frame(4, kindCall, "\x02\x00\x05"), "runs past the frame"},
		{"hello too large", readHello, frame(MaxHello+1, kindHello, "{"), "exceeds the 1048576-byte limit"},
		{"hello not JSON", readHello, frame(2, kindHello, "{"), "hello"},
		{"hello name too long", readHello, honest(kindHello, `{"functions":["`+longName+`"]}`), "function 0 has a name of 1025 bytes"},
	} {
		err := tc.read(NewReader(bytes.NewReader(tc.b)))
		if !errors.Is(err, ErrFrame) || errors.Is(err, io.EOF) || !strings.Contains(fmt.Sprint(err), tc.want) {
			t.Errorf("%s: read = %v; want ErrFrame (not io.EOF) saying %q", tc.name, err, tc.want)
		}
	}
}

// A length prefix is a claim: one over MaxFrame is refused, naming the limit, before
// anything is allocated, and one within it whose bytes never come costs about what
// arrived, not what was claimed.
func TestReaderBoundsWhatALengthCosts(t *testing.T) {
	for _, tc := range []struct {
		name     string
		b        []byte
		want     string // in the error
		maxAlloc uint64
	}{
		{"4 GiB claimed", frame(0xffffffff, kindCall, "\x02\x00\x01f"), "length 4294967295 exceeds the 1073741824-byte limit (MaxFrame)", payloadStep / 2},
		{"1 GiB claimed, 4 bytes sent", frame(MaxFrame, kindCall, "\x02\x00\x01f"), "cut short", 64<<10 + 2*payloadStep},
	} {
		var err error
		before := heapAllocated()
		_, err = NewReader(bytes.NewReader(tc.b)).ReadCall()
		if got := heapAllocated() - before; got > tc.maxAlloc {
			t.Errorf("%s: allocated %d bytes; want at most %d", tc.name, got, tc.maxAlloc)
		}
		if !errors.Is(err, ErrFrame) || !strings.Contains(fmt.Sprint(err), tc.want) {
			t.Errorf("%s: ReadCall = %v; want ErrFrame saying %q", tc.name, err, tc.want)
		}
	}
}

// A payload larger than the Reader allocates up front arrives whole, whatever its
// size and however the stream splits it.
func TestReaderGrowsLargePayloads(t *testing.T) {
	for _, n := range []int{payloadStep - 1, payloadStep, payloadStep + 1, 3*payloadStep + 5} {
		input := make([]byte, n)
		for i := range input {
			input[i] = byte(i * 7)
		}
		call := Call{Index: 9, Function: "f", Input: input}
		b := encoded(t, func(w *Writer) error { return w.WriteCall(call) })
		got, err := NewReader(iotest.HalfReader(bytes.NewReader(b))).ReadCall()
		if err != nil || !bytes.Equal(got.Input, input) {
			t.Errorf("%d-byte input read back as %d bytes, %v", n, len(got.Input), err)
		}
	}
}

// A large input or output goes straight to the stream: the writer keeps no copy of
// it between frames, which would hold a worker's memory at its largest input.
func TestWriterKeepsNoCopyOfLargePayloads(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	big := bytes.Repeat([]byte("x"), 4<<20)
	call := Call{Index: 1, Function: "length", Input: big}
	res := Result{Index: 1, Output: big}
	if err := w.WriteCall(call); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteResult(res); err != nil {
		t.Fatal(err)
	}
	if c := cap(w.buf); c > 1<<10 {
		t.Errorf("writer holds a %d-byte buffer after writing %d-byte payloads; want only frame headers", c, len(big))
	}
	r := NewReader(&buf)
	if got, err := r.ReadCall(); err != nil || !reflect.DeepEqual(got, call) {
		t.Errorf("call of %d bytes, %v; want %d", len(got.Input), err, len(big))
	}
	if got, err := r.ReadResult(); err != nil || !reflect.DeepEqual(got, res) {
		t.Errorf("result of %d bytes, %v; want %d", len(got.Output), err, len(big))
	}
}
