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

// MaxRecordCount bounds how many records a decoder accepts in one batch, so that a
// corrupt or hostile length cannot make it allocate without bound.
const MaxRecordCount = 1 << 20

var errShort = errors.New("truncated record")

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
	d := decoder{b: b}
	d.version()
	c := Chunk{Seq: d.varint()}
	n := d.count()
	if d.err == nil {
		c.Items = make([]Item, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		c.Items[i] = Item{Index: d.varint(), Blob: string(d.bytes()), Data: d.bytes()}
	}
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
		if r.Err == nil {
			b = append(b, 0)
			b = appendBytes(b, []byte(r.Blob))
			b = appendBytes(b, r.Output)
			continue
		}
		b = append(b, 1)
		b = appendBytes(b, []byte(r.Err.Kind))
		b = appendBytes(b, []byte(r.Err.Message))
		b = appendBytes(b, []byte(r.Err.Stack))
	}
	return b
}

// DecodeResults decodes results encoded by AppendResults. Outputs alias b.
func DecodeResults(b []byte) ([]Result, error) {
	d := decoder{b: b}
	d.version()
	n := d.count()
	var rs []Result
	if d.err == nil {
		rs = make([]Result, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		r := Result{Index: d.varint()}
		switch d.byte() {
		case 0:
			r.Blob = string(d.bytes())
			r.Output = d.bytes()
		case 1:
			r.Err = &CallError{Kind: string(d.bytes()), Message: string(d.bytes()), Stack: string(d.bytes())}
		default:
			d.fail(fmt.Errorf("result %d: bad status byte", i))
		}
		rs[i] = r
	}
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
	d := decoder{b: b}
	d.version()
	n := d.count()
	var ls []LogLine
	if d.err == nil {
		ls = make([]LogLine, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		ls[i] = LogLine{Index: d.varint(), Stream: d.byte(), Text: string(d.bytes())}
	}
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
// can decode a whole record and check once.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.b = nil
}

func (d *decoder) version() {
	if v := d.byte(); d.err == nil && v != encodingVersion {
		d.fail(fmt.Errorf("unknown encoding version %d", v))
	}
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail(errShort)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(errShort)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(errShort)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) count() int {
	n := d.uvarint()
	// Every record takes at least one byte, so a count beyond the bytes left is corrupt.
	if n > MaxRecordCount || n > uint64(len(d.b)) {
		d.fail(fmt.Errorf("record count %d out of range", n))
		return 0
	}
	return int(n)
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail(errShort)
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}
