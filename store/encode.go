package store

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The record encodings below are what backends store as message bodies: compact,
// length-prefixed and cheap to decode, because every input and result passes
// through them. Each begins with a version byte so that the format can change.

const encodingVersion = 1

// Limits a decoder checks besides MaxRecordBytes and MaxInlineBytes, so that a
// corrupt or hostile record cannot make it allocate without bound or hand on values
// no writer produces.
const (
	// MaxRecordCount bounds the items, results or lines of one record.
	MaxRecordCount = 1 << 20
	// MaxKeyBytes bounds a blob key held in a record.
	MaxKeyBytes = 1 << 10
	// MaxKindBytes bounds a CallError's Kind.
	MaxKindBytes = 1 << 10
)

// ErrBadRecord is wrapped by every error a decoder returns: the bytes are not a
// record that this version's Append functions could have written within the limits.
var ErrBadRecord = errors.New("bad record")

var errShort = errors.New("truncated record")

// The fewest bytes each element of a record takes, which bounds how many elements
// the rest of a record can claim: an index, then two lengths (an item's key and
// data, a line's stream and text) or a status and two or three lengths (a result).
const (
	minItemBytes   = 3
	minResultBytes = 4
	minLineBytes   = 3
	// minCallErrorBytes: an earlier failure's three lengths.
	minCallErrorBytes = 3
)

// AppendChunk appends the encoding of c to b.
func AppendChunk(b []byte, c Chunk) []byte {
	b = append(b, encodingVersion)
	b = binary.AppendVarint(b, c.Seq)
	b = binary.AppendUvarint(b, uint64(len(c.Items)))
	for _, it := range c.Items {
		b = binary.AppendVarint(b, it.Index)
		b = appendBytes(b, []byte(it.Blob))
		b = appendBytes(b, it.Data)
	}
	return b
}

// DecodeChunk decodes a chunk encoded by AppendChunk. The items' Data alias b.
func DecodeChunk(b []byte) (Chunk, error) {
	d := newDecoder(b, "item")
	c := Chunk{Seq: d.index("seq", 0)}
	if n := d.count(minItemBytes); n > 0 {
		c.Items = make([]Item, n)
	}
	for i := 0; i < len(c.Items) && d.err == nil; i++ {
		d.at = i
		it := &c.Items[i]
		it.Index = d.index("index", 0)
		it.Blob = string(d.bytes("blob key", MaxKeyBytes))
		it.Data = d.bytes("data", MaxInlineBytes)
		if it.Blob != "" && len(it.Data) > 0 {
			d.failf("both blob key %q and %d bytes of data", it.Blob, len(it.Data))
		}
	}
	d.end()
	if d.err != nil {
		return Chunk{}, fmt.Errorf("decode chunk: %w", d.err)
	}
	return c, nil
}

// AppendResults appends the encoding of rs to b.
func AppendResults(b []byte, rs []Result) []byte {
	b = append(b, encodingVersion)
	b = binary.AppendUvarint(b, uint64(len(rs)))
	for _, r := range rs {
		b = binary.AppendVarint(b, r.Index)
		status := byte(statusOutput)
		if r.Err != nil {
			status = statusError
		}
		if len(r.Earlier) > 0 {
			status |= statusEarlier
		}
		b = append(b, status)
		if r.Err == nil {
			b = appendBytes(b, []byte(r.Blob))
			b = appendBytes(b, r.Output)
		} else {
			b = appendCallError(b, *r.Err)
		}
		if len(r.Earlier) > 0 {
			b = binary.AppendUvarint(b, uint64(len(r.Earlier)))
			for _, e := range r.Earlier {
				b = appendCallError(b, e)
			}
		}
	}
	return b
}

// A result's status byte: an output or an error, and whether the failures of
// earlier attempts follow.
const (
	statusOutput  = 0
	statusError   = 1
	statusEarlier = 2 // a flag
)

func appendCallError(b []byte, e CallError) []byte {
	b = appendBytes(b, []byte(e.Kind))
	b = appendBytes(b, []byte(e.Message))
	return appendBytes(b, []byte(e.Stack))
}

// callError decodes what appendCallError wrote.
func (d *decoder) callError(what string) CallError {
	e := CallError{
		Kind:    string(d.bytes(what+" kind", MaxKindBytes)),
		Message: string(d.bytes(what+" message", MaxInlineBytes)),
		Stack:   string(d.bytes(what+" stack", MaxInlineBytes)),
	}
	if d.err == nil && e.Kind == "" {
		d.failf("%s without a kind", what)
	}
	return e
}

// DecodeResults decodes results encoded by AppendResults. Outputs alias b.
func DecodeResults(b []byte) ([]Result, error) {
	d := newDecoder(b, "result")
	var rs []Result
	if n := d.count(minResultBytes); n > 0 {
		rs = make([]Result, n)
	}
	for i := 0; i < len(rs) && d.err == nil; i++ {
		d.at = i
		r := &rs[i]
		r.Index = d.index("index", 0)
		status := d.byte("status")
		switch base := status &^ statusEarlier; {
		case d.err != nil:
		case base == statusOutput:
			r.Blob = string(d.bytes("blob key", MaxKeyBytes))
			r.Output = d.bytes("output", MaxInlineBytes)
			if r.Blob != "" && len(r.Output) > 0 {
				d.failf("both blob key %q and %d bytes of output", r.Blob, len(r.Output))
			}
		case base == statusError:
			e := d.callError("error")
			r.Err = &e
		default:
			d.failf("status %d, want 0 (output) or 1 (error), with or without 2 (earlier failures)", status)
		}
		if status&statusEarlier != 0 && d.err == nil {
			n := d.count(minCallErrorBytes)
			if n == 0 && d.err == nil {
				d.failf("earlier failures flagged, none given")
			}
			r.Earlier = make([]CallError, 0, n)
			for range n {
				if d.err != nil {
					break
				}
				r.Earlier = append(r.Earlier, d.callError("earlier failure"))
			}
		}
	}
	d.end()
	if d.err != nil {
		return nil, fmt.Errorf("decode results: %w", d.err)
	}
	return rs, nil
}

// AppendLogs appends the encoding of lines to b.
func AppendLogs(b []byte, lines []LogLine) []byte {
	b = append(b, encodingVersion)
	b = binary.AppendUvarint(b, uint64(len(lines)))
	for _, l := range lines {
		b = binary.AppendVarint(b, l.Index)
		b = append(b, l.Stream)
		b = appendBytes(b, []byte(l.Text))
	}
	return b
}

// DecodeLogs decodes log lines encoded by AppendLogs.
func DecodeLogs(b []byte) ([]LogLine, error) {
	d := newDecoder(b, "line")
	var ls []LogLine
	if n := d.count(minLineBytes); n > 0 {
		ls = make([]LogLine, n)
	}
	for i := 0; i < len(ls) && d.err == nil; i++ {
		d.at = i
		l := &ls[i]
		l.Index = d.index("index", -1) // -1: printed outside any call
		l.Stream = d.byte("stream")
		l.Text = string(d.bytes("text", MaxRecordBytes))
		if d.err == nil && l.Stream != Stdout && l.Stream != Stderr {
			d.failf("stream %d, want %d (stdout) or %d (stderr)", l.Stream, Stdout, Stderr)
		}
	}
	d.end()
	if d.err != nil {
		return nil, fmt.Errorf("decode logs: %w", d.err)
	}
	return ls, nil
}

func appendBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// decoder reads the encodings above, remembering the first error so that callers
// can decode a whole record and check once. Its errors name the element (noun and
// at) and the field they were reading.
type decoder struct {
	b    []byte
	err  error
	noun string // what the record holds a count of: "item", "result", "line"
	at   int    // the element being read, or -1 while reading the header
}

// newDecoder starts decoding record b: it checks b's size and version.
func newDecoder(b []byte, noun string) decoder {
	d := decoder{b: b, noun: noun, at: -1}
	if len(b) > MaxRecordBytes {
		d.failf("record of %d bytes exceeds the %d-byte limit (MaxRecordBytes)", len(b), MaxRecordBytes)
		return d
	}
	if v := d.byte("version"); d.err == nil && v != encodingVersion {
		d.failf("unknown encoding version %d, want %d", v, encodingVersion)
	}
	return d
}

// end checks that the record holds nothing after its last element.
func (d *decoder) end() {
	d.at = -1
	if d.err == nil && len(d.b) > 0 {
		d.failf("%d bytes after the last %s", len(d.b), d.noun)
	}
}

func (d *decoder) failf(format string, args ...any) {
	if d.err == nil {
		err := fmt.Errorf(format, args...)
		if d.at >= 0 {
			err = fmt.Errorf("%s %d: %w", d.noun, d.at, err)
		}
		d.err = fmt.Errorf("%w: %w", ErrBadRecord, err)
	}
	d.b = nil
}

func (d *decoder) byte(field string) byte {
	if len(d.b) < 1 {
		d.failf("%s: %w", field, errShort)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// index reads a varint that must be at least least.
func (d *decoder) index(field string, least int64) int64 {
	v, n := binary.Varint(d.b)
	switch {
	case n == 0:
		d.failf("%s: %w", field, errShort)
		return 0
	case n < 0:
		d.failf("%s overflows 64 bits", field)
		return 0
	case v < least:
		d.failf("%s %d is less than %d", field, v, least)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// length reads a uvarint that must be at most limit.
func (d *decoder) length(field string, limit int) int {
	v, n := binary.Uvarint(d.b)
	switch {
	case n == 0:
		d.failf("%s: %w", field, errShort)
		return 0
	case n < 0:
		d.failf("%s overflows 64 bits", field)
		return 0
	case v > uint64(limit):
		d.failf("%s %d exceeds the limit of %d", field, v, limit)
		return 0
	}
	d.b = d.b[n:]
	return int(v)
}

// count reads how many elements follow, each at least size bytes: a count beyond
// what the bytes left can hold is corrupt, and is refused before it is allocated.
func (d *decoder) count(size int) int {
	n := d.length(d.noun+" count", MaxRecordCount)
	if d.err == nil && n > len(d.b)/size {
		d.failf("%d %ss claimed, but the %d bytes left hold at most %d", n, d.noun, len(d.b), len(d.b)/size)
		return 0
	}
	return n
}

// bytes reads a length-prefixed field of at most limit bytes; the result aliases
// the record.
func (d *decoder) bytes(field string, limit int) []byte {
	v, n := binary.Uvarint(d.b)
	switch {
	case n == 0:
		d.failf("%s length: %w", field, errShort)
		return nil
	case n < 0:
		d.failf("%s length overflows 64 bits", field)
		return nil
	case v > uint64(limit):
		d.failf("%s of %d bytes exceeds the %d-byte limit", field, v, limit)
		return nil
	case v > uint64(len(d.b)-n):
		d.failf("%s of %d bytes: %w after %d", field, v, errShort, len(d.b)-n)
		return nil
	}
	p := d.b[n : n+int(v) : n+int(v)]
	d.b = d.b[n+int(v):]
	return p
}
