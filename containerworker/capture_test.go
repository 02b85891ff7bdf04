package containerworker

import (
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/burla-temporal/burla/store"
)

// A marker that follows long output with no newline can straddle two of the
// capture's buffer-sized pieces; it must still end its call, or the next call's
// output would be counted against this one's limit and dropped.
func TestCaptureFindsMarkerAcrossPieces(t *testing.T) {
	marker := []byte("\x00burla-end-of-call:0123456789abcdef01234567\n")
	for _, split := range []int{1, 10, len(marker) - 1} {
		pr, pw := io.Pipe()
		order := &callOrder{}
		order.push(0)
		var mu sync.Mutex
		var lines []store.LogLine
		c := newCapture(store.Stdout, pr, marker, captureBuffer+100, order, func(l store.LogLine) {
			mu.Lock()
			lines = append(lines, l)
			mu.Unlock()
		})
		go c.run()
		// As a program would: the next call's output comes once this call has ended.
		go func() {
			// The marker starts split bytes before the end of the capture's buffer.
			pw.Write(append([]byte(strings.Repeat("z", captureBuffer-split)), marker...))
		}()
		select {
		case <-c.ends:
		case <-time.After(time.Second):
			t.Fatalf("split %d: no end of the first call", split)
		}
		order.push(1)
		go func() {
			pw.Write(append([]byte("next call\n"), marker...))
			pw.Close()
		}()
		select {
		case <-c.ends:
		case <-time.After(time.Second):
			t.Fatalf("split %d: no end of the second call", split)
		}
		<-c.closed
		mu.Lock()
		var first strings.Builder
		var rest []string
		for _, l := range lines {
			if l.Index == 0 {
				first.WriteString(l.Text)
			} else {
				rest = append(rest, l.Text)
			}
		}
		mu.Unlock()
		if got, want := first.String(), strings.Repeat("z", captureBuffer-split); got != want {
			t.Errorf("split %d: first call printed %d bytes (%q...); want %d z's", split, len(got), got[:min(len(got), 20)], len(want))
		}
		if len(rest) != 1 || rest[0] != "next call" {
			t.Errorf("split %d: second call printed %q; want [\"next call\"]", split, rest)
		}
	}
}

func TestMarkerStart(t *testing.T) {
	m := []byte("\x00end\n")
	for _, c := range []struct {
		b    string
		want int
	}{
		{"abc", 3},
		{"abc\x00", 3},
		{"abc\x00en", 3},
		{"abc\x00end", 3},
		{"\x00en", 0},
		{"abc\x00x", 5},
		{"", 0},
	} {
		if got := markerStart([]byte(c.b), m); got != c.want {
			t.Errorf("markerStart(%q) = %d; want %d", c.b, got, c.want)
		}
	}
}
