package containerworker

import (
	"testing"
	"time"

	"github.com/burla-temporal/burla/store"
)

func TestStatsAreTakenOnce(t *testing.T) {
	var st stats
	if _, ok := st.take(); ok {
		t.Fatal("fresh stats have something to report")
	}
	st.claimed(2 * time.Millisecond)
	st.stored([]store.Result{{Index: 0}, {Index: 1, Err: &store.CallError{Kind: store.KindPanic}}, {Index: 2}})
	st.chunkDone(time.Second)
	s, ok := st.take()
	if !ok || s.Done != 3 || s.Failed != 1 || len(s.Claims) != 1 || s.Claims[0] != 0.002 || len(s.Chunks) != 1 || s.Chunks[0] != 1 {
		t.Errorf("took %+v, %v; want 3 done, 1 failed, one 2ms claim, one 1s chunk", s, ok)
	}
	if s, ok := st.take(); ok {
		t.Errorf("second take %+v: want nothing", s)
	}
	for range 2 * maxSamples {
		st.claimed(time.Millisecond)
	}
	if s, _ := st.take(); len(s.Claims) != maxSamples {
		t.Errorf("%d claim samples in one report; want at most %d", len(s.Claims), maxSamples)
	}
	var none *stats // a committer without stats records nothing
	none.stored([]store.Result{{}})
	none.claimed(time.Second)
	none.chunkDone(time.Second)
}
