package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestChunkRoundTrip(t *testing.T) {
	for _, c := range []Chunk{
		{Seq: 0},
		{Seq: 7, Items: []Item{{Index: 0, Data: []byte("1")}, {Index: 1, Data: []byte(`{"a":[1,2]}`)}}},
		{Seq: 1 << 40, Items: []Item{{Index: 5, Blob: "in-j-1-5"}, {Index: 6, Data: []byte{}}}},
	} {
		got, err := DecodeChunk(AppendChunk(nil, c))
		if err != nil {
			t.Fatalf("DecodeChunk: %v", err)
		}
		if len(got.Items) == 0 {
			got.Items = c.Items
		}
		for i := range got.Items {
			if len(got.Items[i].Data) == 0 {
				got.Items[i].Data = c.Items[i].Data // nil and empty are the same on the wire
			}
		}
		if !reflect.DeepEqual(got, c) {
			t.Errorf("round trip of %+v = %+v", c, got)
		}
	}
}

func TestResultsRoundTrip(t *testing.T) {
	rs := []Result{
		{Index: 3, Output: []byte("6")},
		{Index: 4, Blob: "out-j-4"},
		{Index: 5, Err: &CallError{Kind: KindPanic, Message: "boom", Stack: "goroutine 1"}},
		{Index: 6, Output: []byte("12"), Earlier: []CallError{{Kind: KindExit, Message: "exit status 3"}}},
		{Index: 7, Err: &CallError{Kind: KindError, Message: "no"}, Earlier: []CallError{{Kind: KindError, Message: "no"}, {Kind: KindTimeout, Message: "slow", Stack: "s"}}},
	}
	got, err := DecodeResults(AppendResults(nil, rs))
	if err != nil {
		t.Fatal(err)
	}
	got[1].Output = nil
	if !reflect.DeepEqual(got, rs) {
		t.Errorf("round trip = %+v; want %+v", got, rs)
	}
}

func TestLogsRoundTrip(t *testing.T) {
	ls := []LogLine{{Index: 1, Stream: Stdout, Text: "hello"}, {Index: 2, Stream: Stderr, Text: ""}}
	got, err := DecodeLogs(AppendLogs(nil, ls))
	if err != nil || !reflect.DeepEqual(got, ls) {
		t.Errorf("round trip = %+v, %v; want %+v", got, err, ls)
	}
}

func TestDecodeRejectsCorruptRecords(t *testing.T) {
	chunk := func(b []byte) error { _, err := DecodeChunk(b); return err }
	results := func(b []byte) error { _, err := DecodeResults(b); return err }
	logs := func(b []byte) error { _, err := DecodeLogs(b); return err }
	good := AppendResults(nil, []Result{{Index: 1, Output: []byte("12345")}})
	v := byte(encodingVersion)
	for _, tc := range []struct {
		name   string
		decode func([]byte) error
		b      []byte
		want   string // in the error
	}{
		{"empty", results, []byte{}, "version: truncated record"},
		{"bad version", results, append([]byte{9}, good[1:]...), "unknown encoding version 9"},
		{"truncated", results, good[:len(good)-2], "result 0: output of 5 bytes: truncated record"},
		{"trailing bytes", results, append(good[:len(good):len(good)], 0), "1 bytes after the last result"},
		{"huge count", results, []byte{v, 0xff, 0xff, 0xff, 0xff, 0x0f}, "result count 4294967295 exceeds the limit of 1048576"},
		{"count past the bytes", results, []byte{v, 3, 2, 0, 0, 0}, "3 results claimed, but the 4 bytes left hold at most 1"},
		{"bad status", results, []byte{v, 1, 2, 7, 0, 0}, "result 0: status 7"},
		{"negative result index", results, []byte{v, 1, 1, 0, 0, 0}, "result 0: index -1 is less than 0"},
		{"error without a kind", results, []byte{v, 1, 2, 1, 0, 0, 0}, "result 0: error without a kind"},
		{"key and output", results, []byte{v, 1, 2, 0, 1, 'k', 1, 'o'}, "both blob key"},
		{"output over MaxInlineBytes", results, []byte{v, 1, 2, 0, 0, 0x81, 0x80, 0x10}, "output of 262145 bytes exceeds the 262144-byte limit"},
		{"negative chunk seq", chunk, []byte{v, 1, 0}, "seq -1 is less than 0"},
		{"negative item index", chunk, []byte{v, 0, 1, 1, 0, 0}, "item 0: index -1 is less than 0"},
		{"key over MaxKeyBytes", chunk, []byte{v, 0, 1, 0, 0x81, 0x08, 0}, "item 0: blob key of 1025 bytes exceeds the 1024-byte limit"},
		{"key and data", chunk, []byte{v, 0, 1, 0, 1, 'k', 1, 'd'}, "item 0: both blob key"},
		{"varint overflow", chunk, []byte{v, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0}, "seq overflows 64 bits"},
		{"line index below -1", logs, []byte{v, 1, 3, Stdout, 0}, "line 0: index -2 is less than -1"},
		{"unknown stream", logs, []byte{v, 1, 0, 3, 0}, "line 0: stream 3"},
	} {
		err := tc.decode(tc.b)
		if !errors.Is(err, ErrBadRecord) || !strings.Contains(fmt.Sprint(err), tc.want) {
			t.Errorf("%s: decode %x = %v; want ErrBadRecord saying %q", tc.name, tc.b, err, tc.want)
		}
	}
}

// Every backend stores a record as one message or document: a decoder refuses a
// larger one, whatever it holds, naming the limit.
func TestDecodeRefusesRecordsOverTheLimit(t *testing.T) {
	big := make([]byte, MaxInlineBytes)
	var items []Item
	var rs []Result
	var ls []LogLine
	for i := range 4 {
		items = append(items, Item{Index: int64(i), Data: big})
		rs = append(rs, Result{Index: int64(i), Output: big})
		ls = append(ls, LogLine{Index: int64(i), Stream: Stdout, Text: string(big)})
	}
	for name, decode := range map[string]func() error{
		"chunk":   func() error { _, err := DecodeChunk(AppendChunk(nil, Chunk{Items: items})); return err },
		"results": func() error { _, err := DecodeResults(AppendResults(nil, rs)); return err },
		"logs":    func() error { _, err := DecodeLogs(AppendLogs(nil, ls)); return err },
	} {
		if err := decode(); !errors.Is(err, ErrBadRecord) || !strings.Contains(err.Error(), "limit (MaxRecordBytes)") {
			t.Errorf("%s of %d bytes decoded: %v; want ErrBadRecord naming MaxRecordBytes", name, 4*len(big), err)
		}
	}
}

// A record's counts are claims too: decoding costs a small multiple of the record's
// size, however many elements it says it holds.
func TestDecodeAllocatesInProportion(t *testing.T) {
	const n = 100 << 10
	decoders := map[string]func([]byte) error{
		"chunk":   func(b []byte) error { _, err := DecodeChunk(b); return err },
		"results": func(b []byte) error { _, err := DecodeResults(b); return err },
		"logs":    func(b []byte) error { _, err := DecodeLogs(b); return err },
	}
	for name, decode := range decoders {
		for _, claim := range []uint64{n, n / 3, 1 << 20} {
			b := []byte{encodingVersion}
			if name == "chunk" {
				b = append(b, 0) // seq
			}
			b = binary.AppendUvarint(b, claim)
			b = append(b, make([]byte, n)...) // zeros: elements with index 0 and empty fields
			before := heapAllocated()
			decode(b)
			if got, limit := heapAllocated()-before, uint64(20*len(b)); got > limit {
				t.Errorf("%s claiming %d elements: decoding %d bytes allocated %d; want at most %d", name, claim, len(b), got, limit)
			}
		}
	}
}
