// Package wire holds the protocols inside a node: the framed one between a
// container worker and the user's program running in worker mode (this file), and
// the JSON lines between the node agent and its container workers (agent.go).
//
// The framed protocol: the container worker talks to the user's program running
// in worker mode. The worker starts the program with two extra file
// descriptors: it writes calls to fd 3 and reads the program's hello and results
// from fd 4, leaving the program's own stdout and stderr free to be captured as the
// job's logs.
//
// A frame is a 4-byte big-endian length n, then n bytes: a kind byte and a payload.
// A Reader takes the length for a claim: it refuses one over MaxFrame (MaxHello for
// the hello) before allocating, and grows a payload's buffer as its bytes arrive.
// After each call the program writes the end-of-call marker to stdout and stderr, so
// that the worker can tell which call printed which bytes.
package wire

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
)

// Environment variables that put a program in worker mode.
const (
	EnvWorker = "BURLA_WORKER" // "1" in worker mode
	EnvMarker = "BURLA_MARKER" // the per-process nonce of the end-of-call marker
)

// File descriptors of the protocol inside the program.
const (
	CallFD   = 3
	ResultFD = 4
)

// Version is the protocol version; a worker refuses a program that speaks another.
const Version = 1

// MaxFrame bounds one frame. Inputs larger than a chunk may hold arrive as blobs, but
// a single value may still be this large.
const MaxFrame = 1 << 30

// MaxHello bounds the hello frame: a list of function names needs far less, and a
// worker reads the hello before it knows the program speaks this protocol at all.
const MaxHello = 1 << 20

// MaxName bounds a function name and an error kind, each in its own frame.
const MaxName = 1 << 10

// payloadStep is how much of a frame's payload a Reader allocates before the bytes
// arrive. A length prefix is only a claim: a peer that claims a gigabyte and sends
// five bytes costs this much, not a gigabyte.
const payloadStep = 1 << 20

// Frame kinds.
const (
	kindHello  = 'H'
	kindCall   = 'C'
	kindResult = 'R'
)

// Hello is the program's first frame: what it can run.
type Hello struct {
	Version   int      `json:"version"`
	Functions []string `json:"functions"`
	GOOS      string   `json:"goos"`
	GOARCH    string   `json:"goarch"`
}

// Call asks the program to run Function on one encoded input.
type Call struct {
	Index    int64
	Function string
	// TimeoutMillis, if positive, is the deadline of the context the function gets.
	TimeoutMillis int64
	Input         []byte
}

// Result is the outcome of a Call.
type Result struct {
	Index  int64
	Output []byte
	Err    *Error
}

// Error is a failed call as the program saw it.
type Error struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
	Stack   string `json:"stack,omitempty"`
	// Permanent is set when the function marked its error as one that running
	// the call again would repeat (burla.Permanent): the call is not retried.
	Permanent bool `json:"permanent,omitempty"`
}

// Marker returns the end-of-call marker for a nonce. It ends in a newline so that a
// line reader sees it at the end of a line, even after output with no newline.
func Marker(nonce string) []byte { return []byte("\x00burla-end-of-call:" + nonce + "\n") }

// Writer writes frames.
type Writer struct {
	w   *bufio.Writer
	buf []byte
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: bufio.NewWriterSize(w, 64<<10)} }

// frame writes and flushes one frame.
func (w *Writer) frame(kind byte, parts ...[]byte) error {
	if err := w.queue(kind, parts...); err != nil {
		return err
	}
	return w.w.Flush()
}

// queue writes one frame, whose payload is the concatenation of parts, into the
// buffer without copying the parts into one slice first (an input or output may be
// hundreds of MiB); what does not fit in the buffer is written through.
func (w *Writer) queue(kind byte, parts ...[]byte) error {
	n := 1
	for _, p := range parts {
		n += len(p)
	}
	if n > MaxFrame {
		return fmt.Errorf("frame of %d bytes exceeds the %d-byte limit", n, MaxFrame)
	}
	var hdr [5]byte
	binary.BigEndian.PutUint32(hdr[:4], uint32(n))
	hdr[4] = kind
	if _, err := w.w.Write(hdr[:]); err != nil {
		return err
	}
	for _, p := range parts {
		if _, err := w.w.Write(p); err != nil {
			return err
		}
	}
	return nil
}

// Flush writes whatever QueueCall left in the buffer.
func (w *Writer) Flush() error { return w.w.Flush() }

// WriteHello writes h.
func (w *Writer) WriteHello(h Hello) error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	return w.frame(kindHello, b)
}

// WriteCall writes c and flushes it.
func (w *Writer) WriteCall(c Call) error {
	if err := w.QueueCall(c); err != nil {
		return err
	}
	return w.w.Flush()
}

// QueueCall writes c into the buffer, to go with the next calls in one write when
// Flush is called (or when the buffer fills). A worker sends calls ahead of the one
// running this way: the program reads several with one system call and never
// waits for the worker between calls.
func (w *Writer) QueueCall(c Call) error {
	b := w.buf[:0]
	b = binary.AppendVarint(b, c.Index)
	b = binary.AppendVarint(b, c.TimeoutMillis)
	b = binary.AppendUvarint(b, uint64(len(c.Function)))
	b = append(b, c.Function...)
	w.buf = b
	return w.queue(kindCall, b, c.Input)
}

// WriteResult writes r.
func (w *Writer) WriteResult(r Result) error {
	b := w.buf[:0]
	b = binary.AppendVarint(b, r.Index)
	body := r.Output
	if r.Err == nil {
		b = append(b, 0)
	} else {
		e, err := json.Marshal(r.Err)
		if err != nil {
			return err
		}
		b, body = append(b, 1), e
	}
	w.buf = b
	return w.frame(kindResult, b, body)
}

// Reader reads frames.
type Reader struct {
	r *bufio.Reader
}

// NewReader returns a Reader on r.
func NewReader(r io.Reader) *Reader { return &Reader{r: bufio.NewReaderSize(r, 64<<10)} }

// ErrFrame is wrapped by every error a Reader returns for bytes that break the
// protocol, as opposed to the stream ending (io.EOF) or failing.
var ErrFrame = errors.New("malformed frame")

// next reads one frame of kind want, of at most limit bytes; the payload is freshly
// allocated.
func (r *Reader) next(want byte, limit int) ([]byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r.r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: header cut short: %w", ErrFrame, err)
		}
		return nil, err // io.EOF when the peer closed between frames
	}
	n := int64(binary.BigEndian.Uint32(hdr[:4]))
	switch {
	case n < 1:
		return nil, fmt.Errorf("%w: length 0 leaves no room for the kind byte", ErrFrame)
	case n > MaxFrame:
		return nil, fmt.Errorf("%w: length %d exceeds the %d-byte limit (MaxFrame)", ErrFrame, n, MaxFrame)
	case hdr[4] != want:
		return nil, fmt.Errorf("%w: kind %q, want %q", ErrFrame, hdr[4], want)
	case n > int64(limit):
		return nil, fmt.Errorf("%w: %q frame of %d bytes exceeds the %d-byte limit", ErrFrame, want, n, limit)
	}
	p, err := readPayload(r.r, int(n-1))
	if err != nil {
		return nil, fmt.Errorf("%w: %q frame of %d bytes cut short: %w", ErrFrame, want, n, err)
	}
	return p, nil
}

// readPayload reads n bytes, growing its buffer as they arrive (doubling, so that a
// large payload is copied about once) rather than trusting n up front. A stream
// that ends first is io.ErrUnexpectedEOF, never io.EOF, which callers take for a
// clean end between frames.
func readPayload(r io.Reader, n int) ([]byte, error) {
	p := make([]byte, 0, min(n, payloadStep))
	for len(p) < n {
		if len(p) == cap(p) {
			p = slices.Grow(p, min(n-len(p), len(p)))
		}
		k, err := io.ReadFull(r, p[len(p):min(n, cap(p))])
		p = p[:len(p)+k]
		if errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		if err != nil {
			return nil, err
		}
	}
	return p, nil
}

// ReadHello reads the program's hello.
func (r *Reader) ReadHello() (Hello, error) {
	p, err := r.next(kindHello, MaxHello)
	if err != nil {
		return Hello{}, err
	}
	var h Hello
	if err := json.Unmarshal(p, &h); err != nil {
		return Hello{}, fmt.Errorf("%w: hello: %w", ErrFrame, err)
	}
	for i, f := range h.Functions {
		if len(f) > MaxName {
			return Hello{}, fmt.Errorf("%w: hello: function %d has a name of %d bytes, over the %d-byte limit", ErrFrame, i, len(f), MaxName)
		}
	}
	return h, nil
}

// ReadCall reads a call.
func (r *Reader) ReadCall() (Call, error) {
	p, err := r.next(kindCall, MaxFrame)
	if err != nil {
		return Call{}, err
	}
	var c Call
	var n int
	if c.Index, n = binary.Varint(p); n <= 0 {
		return Call{}, fmt.Errorf("%w: call index is not a varint", ErrFrame)
	}
	if c.Index < 0 {
		return Call{}, fmt.Errorf("%w: call index %d is negative", ErrFrame, c.Index)
	}
	p = p[n:]
	if c.TimeoutMillis, n = binary.Varint(p); n <= 0 {
		return Call{}, fmt.Errorf("%w: call %d: timeout is not a varint", ErrFrame, c.Index)
	}
	p = p[n:]
	fl, n := binary.Uvarint(p)
	switch {
	case n <= 0:
		return Call{}, fmt.Errorf("%w: call %d: function name length is not a varint", ErrFrame, c.Index)
	case fl > MaxName:
		return Call{}, fmt.Errorf("%w: call %d: function name of %d bytes exceeds the %d-byte limit", ErrFrame, c.Index, fl, MaxName)
	case fl > uint64(len(p)-n):
		return Call{}, fmt.Errorf("%w: call %d: function name of %d bytes runs past the frame's %d", ErrFrame, c.Index, fl, len(p)-n)
	}
	p = p[n:]
	c.Function = string(p[:fl])
	c.Input = p[fl:]
	return c, nil
}

// ReadResult reads a result.
func (r *Reader) ReadResult() (Result, error) {
	p, err := r.next(kindResult, MaxFrame)
	if err != nil {
		return Result{}, err
	}
	var res Result
	var n int
	if res.Index, n = binary.Varint(p); n <= 0 || n >= len(p) {
		return Result{}, fmt.Errorf("%w: result index and status missing", ErrFrame)
	}
	if res.Index < 0 {
		return Result{}, fmt.Errorf("%w: result index %d is negative", ErrFrame, res.Index)
	}
	status, body := p[n], p[n+1:]
	switch status {
	case 0:
		res.Output = body
	case 1:
		res.Err = new(Error)
		if err := json.Unmarshal(body, res.Err); err != nil {
			return Result{}, fmt.Errorf("%w: result %d: error: %w", ErrFrame, res.Index, err)
		}
		if k := len(res.Err.Kind); k == 0 || k > MaxName {
			return Result{}, fmt.Errorf("%w: result %d: error kind of %d bytes, want 1 to %d", ErrFrame, res.Index, k, MaxName)
		}
	default:
		return Result{}, fmt.Errorf("%w: result %d: status %d, want 0 or 1", ErrFrame, res.Index, status)
	}
	return res, nil
}
