package wire

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
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
	for name, b := range map[string][]byte{
		"wrong kind":   {0, 0, 0, 2, 'C', 0},
		"zero length":  {0, 0, 0, 0},
		"huge length":  {0x7f, 0xff, 0xff, 0xff, 'R'},
		"short body":   {0, 0, 0, 9, 'R', 1},
		"empty result": {0, 0, 0, 1, 'R'},
	} {
		if _, err := NewReader(bytes.NewReader(b)).ReadResult(); err == nil || errors.Is(err, io.EOF) {
			t.Errorf("%s: ReadResult = %v; want a frame error", name, err)
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
