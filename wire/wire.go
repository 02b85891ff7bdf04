// Package wire is the framed protocol between a container worker and the user's
// program running in worker mode. The worker starts the program with two extra file
// descriptors: it writes calls to fd 3 and reads the program's hello and results
// from fd 4, leaving the program's own stdout and stderr free to be captured as the
// job's logs.
//
// A frame is a 4-byte big-endian length n, then n bytes: a kind byte and a payload.
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

var errFrame = errors.New("malformed frame")

// next reads one frame; the payload is freshly allocated.
func (r *Reader) next(want byte) ([]byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r.r, hdr[:]); err != nil {
		return nil, err // io.EOF when the peer closed between frames
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n < 1 || n > MaxFrame {
		return nil, fmt.Errorf("%w: length %d", errFrame, n)
	}
	if hdr[4] != want {
		return nil, fmt.Errorf("%w: kind %q, want %q", errFrame, hdr[4], want)
	}
	p := make([]byte, n-1)
	if _, err := io.ReadFull(r.r, p); err != nil {
		return nil, fmt.Errorf("%w: %w", errFrame, err)
	}
	return p, nil
}

// ReadHello reads the program's hello.
func (r *Reader) ReadHello() (Hello, error) {
	p, err := r.next(kindHello)
	if err != nil {
		return Hello{}, err
	}
	var h Hello
	if err := json.Unmarshal(p, &h); err != nil {
		return Hello{}, fmt.Errorf("%w: hello: %w", errFrame, err)
	}
	return h, nil
}

// ReadCall reads a call.
func (r *Reader) ReadCall() (Call, error) {
	p, err := r.next(kindCall)
	if err != nil {
		return Call{}, err
	}
	var c Call
	var n int
	if c.Index, n = binary.Varint(p); n <= 0 {
		return Call{}, fmt.Errorf("%w: call index", errFrame)
	}
	p = p[n:]
	if c.TimeoutMillis, n = binary.Varint(p); n <= 0 {
		return Call{}, fmt.Errorf("%w: call timeout", errFrame)
	}
	p = p[n:]
	fl, n := binary.Uvarint(p)
	if n <= 0 || fl > uint64(len(p)-n) {
		return Call{}, fmt.Errorf("%w: call function name", errFrame)
	}
	p = p[n:]
	c.Function = string(p[:fl])
	c.Input = p[fl:]
	return c, nil
}

// ReadResult reads a result.
func (r *Reader) ReadResult() (Result, error) {
	p, err := r.next(kindResult)
	if err != nil {
		return Result{}, err
	}
	var res Result
	var n int
	if res.Index, n = binary.Varint(p); n <= 0 || n >= len(p) {
		return Result{}, fmt.Errorf("%w: result index", errFrame)
	}
	status, body := p[n], p[n+1:]
	switch status {
	case 0:
		res.Output = body
	case 1:
		res.Err = new(Error)
		if err := json.Unmarshal(body, res.Err); err != nil {
			return Result{}, fmt.Errorf("%w: result error: %w", errFrame, err)
		}
	default:
		return Result{}, fmt.Errorf("%w: result status %d", errFrame, status)
	}
	return res, nil
}
