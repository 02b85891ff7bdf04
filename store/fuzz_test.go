package store

import (
	"bytes"
	"errors"
	"reflect"
	"runtime/metrics"
	"testing"
)

// The fuzz targets below feed the record decoders bytes a corrupt or hostile record
// could hold. Each checks that decoding never panics, allocates in proportion to
// the record rather than to the counts and lengths it claims, fails only with
// ErrBadRecord (always for a record over MaxRecordBytes), returns only values
// within the limits, and that whatever it accepts is what the Append functions
// write for it. The round-trip targets check the other direction: every value
// within the limits decodes to itself. Their seed corpora are in testdata/fuzz;
// scripts/fuzz.sh runs them.

// heapAllocated is the bytes this process has allocated on the heap so far. Large
// allocations, the ones a hostile count could cause, are counted at once.
func heapAllocated() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// decodeChecked runs decode on b and fails t if it allocated more than a small
// multiple of len(b) or returned an error other than ErrBadRecord.
func decodeChecked[T any](t *testing.T, b []byte, decode func([]byte) (T, error)) (T, error) {
	t.Helper()
	before := heapAllocated()
	v, err := decode(b)
	// The largest element struct (a Result) is 56 bytes and takes 4 bytes of record;
	// the megabyte is room to spare, as small allocations are counted a span at a time.
	if got, limit := heapAllocated()-before, 32*uint64(len(b))+1<<20; got > limit {
		t.Fatalf("decoding %d bytes allocated %d; want at most %d", len(b), got, limit)
	}
	if err != nil && !errors.Is(err, ErrBadRecord) {
		t.Fatalf("decode error %v does not wrap ErrBadRecord", err)
	}
	if err == nil && len(b) > MaxRecordBytes {
		t.Fatalf("decoded a record of %d bytes, over MaxRecordBytes", len(b))
	}
	return v, err
}

// checkCanonical fails t unless b, which decoded without error, is what encode
// writes for the decoded value up to the varints' spelling: the decoders accept
// overlong varints, and nothing else that the Append functions do not write.
func checkCanonical[T any](t *testing.T, b []byte, v T, encode func([]byte, T) []byte, decode func([]byte) (T, error)) {
	t.Helper()
	again := encode(nil, v)
	if len(again) > len(b) {
		t.Fatalf("%d-byte record re-encodes to %d bytes", len(b), len(again))
	}
	got, err := decode(again)
	if err != nil {
		t.Fatalf("re-encoding of %+v does not decode: %v", v, err)
	}
	if !reflect.DeepEqual(got, v) {
		t.Fatalf("re-encoding of %+v decodes to %+v", v, got)
	}
}

func FuzzDecodeChunk(f *testing.F) {
	good := AppendChunk(nil, Chunk{Seq: 7, Items: []Item{{Index: 0, Data: []byte("1")}, {Index: 1, Blob: "in-j-1-1"}, {Index: 2, Data: []byte{}}}})
	f.Add(good)
	f.Add(good[:len(good)-2])                                          // truncated
	f.Add([]byte{encodingVersion, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})    // huge count
	f.Add([]byte{encodingVersion, 0, 1, 0, 0xff, 0xff, 0xff, 0x7f})    // huge key length
	f.Add([]byte{encodingVersion, 0, 1, 1, 0, 0})                      // negative index
	f.Add([]byte{encodingVersion, 0, 1, 0, 1, 'k', 1, 'd'})            // key and data
	f.Add([]byte{encodingVersion, 0, 1, 0, 0, 2, 0xff, 0xfe})          // bad UTF-8 data
	f.Add([]byte{encodingVersion, 0, 0, 0})                            // trailing byte
	f.Add([]byte{2, 0, 0})                                             // unknown version
	f.Add([]byte{encodingVersion, 0x80, 0x80, 0x80, 0x80, 0x00, 0x00}) // overlong seq
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeChecked(t, b, DecodeChunk)
		if err != nil {
			return
		}
		if c.Seq < 0 {
			t.Fatalf("decoded chunk seq %d", c.Seq)
		}
		for _, it := range c.Items {
			if it.Index < 0 || len(it.Data) > MaxInlineBytes || len(it.Blob) > MaxKeyBytes || it.Blob != "" && len(it.Data) > 0 {
				t.Fatalf("decoded item %d with %d bytes of data and a %d-byte key", it.Index, len(it.Data), len(it.Blob))
			}
		}
		checkCanonical(t, b, c, AppendChunk, DecodeChunk)
	})
}

func FuzzDecodeResults(f *testing.F) {
	good := AppendResults(nil, []Result{
		{Index: 3, Output: []byte("6")},
		{Index: 4, Blob: "out-j-4"},
		{Index: 5, Err: &CallError{Kind: KindPanic, Message: "boom", Stack: "goroutine 1"}},
		{Index: 6, Output: []byte("12"), Earlier: []CallError{{Kind: KindExit, Message: "exit status 3"}}},
		{Index: 7, Err: &CallError{Kind: KindError, Message: "no"}, Earlier: []CallError{{Kind: KindError, Message: "no"}, {Kind: KindTimeout, Message: "slow", Stack: "s"}}},
	})
	f.Add(good)
	f.Add(good[:len(good)-2])                                          // truncated
	f.Add([]byte{encodingVersion, 0xff, 0xff, 0xff, 0xff, 0x0f})       // huge count
	f.Add([]byte{encodingVersion, 1, 2, 7, 0, 0})                      // bad status
	f.Add([]byte{encodingVersion, 1, 2, 1, 0, 0, 0})                   // error without a kind
	f.Add([]byte{encodingVersion, 1, 2, 0, 0, 0xff, 0xff, 0xff, 0x0f}) // huge output length
	f.Add([]byte{encodingVersion, 1, 2, 1, 1, 0xff, 1, 0xfe, 0})       // bad UTF-8 kind and message
	f.Add([]byte{encodingVersion, 1, 2, 2, 0, 1, '1', 0})              // earlier failures flagged, none given
	f.Add([]byte{encodingVersion, 1, 2, 2, 0, 1, '1', 1, 0, 0, 0})     // an earlier failure without a kind
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := decodeChecked(t, b, DecodeResults)
		if err != nil {
			return
		}
		for _, r := range rs {
			bad := r.Index < 0 || len(r.Output) > MaxInlineBytes || len(r.Blob) > MaxKeyBytes || r.Blob != "" && len(r.Output) > 0
			if e := r.Err; e != nil {
				bad = bad || e.Kind == "" || len(e.Kind) > MaxKindBytes || len(e.Message) > MaxInlineBytes || len(e.Stack) > MaxInlineBytes || r.Output != nil || r.Blob != ""
			}
			if bad {
				t.Fatalf("decoded result %+v with error %+v", r, r.Err)
			}
		}
		checkCanonical(t, b, rs, AppendResults, DecodeResults)
	})
}

func FuzzDecodeLogs(f *testing.F) {
	good := AppendLogs(nil, []LogLine{{Index: 1, Stream: Stdout, Text: "hello"}, {Index: -1, Stream: Stderr, Text: ""}})
	f.Add(good)
	f.Add(good[:len(good)-2])                                    // truncated
	f.Add([]byte{encodingVersion, 0xff, 0xff, 0xff, 0xff, 0x0f}) // huge count
	f.Add([]byte{encodingVersion, 1, 3, Stdout, 0})              // index -2
	f.Add([]byte{encodingVersion, 1, 0, 3, 0})                   // unknown stream
	f.Add([]byte{encodingVersion, 1, 0, Stderr, 2, 0xff, 0xfe})  // bad UTF-8 text
	f.Fuzz(func(t *testing.T, b []byte) {
		ls, err := decodeChecked(t, b, DecodeLogs)
		if err != nil {
			return
		}
		for _, l := range ls {
			if l.Index < -1 || l.Stream != Stdout && l.Stream != Stderr {
				t.Fatalf("decoded line %+v", l)
			}
		}
		checkCanonical(t, b, ls, AppendLogs, DecodeLogs)
	})
}

// natural maps any int64 onto the non-negative ones.
func natural(v int64) int64 {
	if v < 0 {
		return ^v
	}
	return v
}

func FuzzChunkRoundTrip(f *testing.F) {
	f.Add(int64(7), int64(0), "in-j-1-1", []byte("1"), uint8(3))
	f.Add(int64(-1), int64(-1<<63), "", []byte{}, uint8(1))
	f.Add(int64(1<<40), int64(1<<62), "\xff\xfe", bytes.Repeat([]byte{0xff}, 300), uint8(0))
	f.Fuzz(func(t *testing.T, seq, index int64, key string, data []byte, items uint8) {
		c := Chunk{Seq: natural(seq)}
		for i := range int64(items % 4) {
			it := Item{Index: natural(index)/4*4 + i}
			if i%2 == 1 {
				it.Blob = key[:min(len(key), MaxKeyBytes)]
			} else {
				it.Data = data[:min(len(data), MaxInlineBytes)]
			}
			c.Items = append(c.Items, it)
		}
		got, err := DecodeChunk(AppendChunk(nil, c))
		if err != nil {
			t.Fatalf("chunk %+v does not decode: %v", c, err)
		}
		if len(got.Items) != len(c.Items) || got.Seq != c.Seq {
			t.Fatalf("chunk %+v decodes to %+v", c, got)
		}
		for i, it := range got.Items {
			if want := c.Items[i]; it.Index != want.Index || it.Blob != want.Blob || !bytes.Equal(it.Data, want.Data) {
				t.Fatalf("item %+v decodes to %+v", want, it)
			}
		}
	})
}

func FuzzResultsRoundTrip(f *testing.F) {
	f.Add(int64(3), "", []byte("6"), false, "", "", "")
	f.Add(int64(4), "out-j-4", []byte(nil), false, "", "", "")
	f.Add(int64(-5), "", []byte(nil), true, KindPanic, "boom \xff", "goroutine 1")
	f.Add(int64(1<<62), "", []byte(nil), true, "", "", "")
	f.Fuzz(func(t *testing.T, index int64, key string, output []byte, failed bool, kind, message, stack string) {
		r := Result{Index: natural(index)}
		switch {
		case failed:
			if kind == "" {
				kind = KindError
			}
			r.Err = &CallError{Kind: kind[:min(len(kind), MaxKindBytes)], Message: message[:min(len(message), MaxInlineBytes)], Stack: stack[:min(len(stack), MaxInlineBytes)]}
		case key != "":
			r.Blob = key[:min(len(key), MaxKeyBytes)]
		default:
			r.Output = output[:min(len(output), MaxInlineBytes)]
		}
		rs := []Result{r, {Index: r.Index + 1, Output: []byte("1")}}
		got, err := DecodeResults(AppendResults(nil, rs))
		if err != nil {
			t.Fatalf("results %+v do not decode: %v", rs, err)
		}
		if len(got) != len(rs) {
			t.Fatalf("%d results decode to %d", len(rs), len(got))
		}
		for i, g := range got {
			if want := rs[i]; g.Index != want.Index || g.Blob != want.Blob || !bytes.Equal(g.Output, want.Output) || !reflect.DeepEqual(g.Err, want.Err) {
				t.Fatalf("result %+v (error %+v) decodes to %+v (error %+v)", want, want.Err, g, g.Err)
			}
		}
	})
}

func FuzzLogsRoundTrip(f *testing.F) {
	f.Add(int64(1), uint8(Stdout), "hello", uint8(2))
	f.Add(int64(-1), uint8(Stderr), "", uint8(1))
	f.Add(int64(-7), uint8(9), "bad \xff utf-8", uint8(0))
	f.Fuzz(func(t *testing.T, index int64, stream uint8, text string, n uint8) {
		if index < -1 {
			index = ^index
		}
		var ls []LogLine
		for i := range n % 4 {
			ls = append(ls, LogLine{Index: index, Stream: Stdout + (stream+i)%2, Text: text})
		}
		got, err := DecodeLogs(AppendLogs(nil, ls))
		if err != nil || !reflect.DeepEqual(got, ls) {
			t.Fatalf("lines %+v decode to %+v, %v", ls, got, err)
		}
	})
}
