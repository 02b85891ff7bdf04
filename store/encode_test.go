package store

import (
	"reflect"
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
	good := AppendResults(nil, []Result{{Index: 1, Output: []byte("12345")}})
	for name, b := range map[string][]byte{
		"empty":       {},
		"bad version": append([]byte{9}, good[1:]...),
		"truncated":   good[:len(good)-2],
		"huge count":  {encodingVersion, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"bad status":  {encodingVersion, 1, 2, 7},
	} {
		if _, err := DecodeResults(b); err == nil {
			t.Errorf("%s: DecodeResults accepted %x", name, b)
		}
	}
}
