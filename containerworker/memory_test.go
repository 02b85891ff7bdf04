package containerworker_test

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/burla-temporal/burla/containerworker"
	"github.com/burla-temporal/burla/store"
	"github.com/burla-temporal/burla/wire"
)

// served drives a worker through Serve, as its node agent does.
type served struct {
	t      *testing.T
	in     *io.PipeWriter
	enc    *json.Encoder
	events chan wire.Event
}

func serve(t *testing.T, s *memStore) *served {
	t.Helper()
	return serveConfig(t, containerworker.Config{Store: s})
}

// serveConfig is serve with a worker of cfg.
func serveConfig(t *testing.T, cfg containerworker.Config) *served {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	w := containerworker.New(cfg)
	done := make(chan struct{})
	go func() { defer close(done); w.Serve(ctx, inR, outW); outW.Close() }()
	sv := &served{t: t, in: inW, enc: json.NewEncoder(inW), events: make(chan wire.Event, 64)}
	go func() {
		defer close(sv.events)
		dec := json.NewDecoder(outR)
		for {
			var e wire.Event
			if dec.Decode(&e) != nil {
				return
			}
			if e.Type != wire.EventStats {
				sv.events <- e
			}
		}
	}()
	t.Cleanup(func() { inW.Close(); cancel(); <-done })
	if e := sv.next(); e.Type != wire.EventReady {
		t.Fatalf("first event %+v; want ready", e)
	}
	return sv
}

func (sv *served) send(c wire.Command) {
	if err := sv.enc.Encode(c); err != nil {
		sv.t.Fatal(err)
	}
}

func (sv *served) next() wire.Event {
	sv.t.Helper()
	select {
	case e, ok := <-sv.events:
		if !ok {
			sv.t.Fatal("the worker stopped reporting")
		}
		return e
	case <-time.After(20 * time.Second):
		sv.t.Fatal("no event from the worker within 20s")
	}
	return wire.Event{}
}

func hogChunks(mbs ...string) []store.Chunk {
	var cs []store.Chunk
	for i, mb := range mbs {
		cs = append(cs, store.Chunk{Seq: int64(i), Items: []store.Item{{Index: int64(i), Data: []byte(mb)}}})
	}
	return cs
}

// A call of a job with dynamic resources that passes its share of the node's
// memory while other workers share the node goes back to the queue, and the agent
// hears of it; once the agent gives the worker the node's memory, the call runs.
func TestDynamicCallOutOfMemoryGoesBackToQueue(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	s := &memStore{chunks: hogChunks("10", "300", "10")}
	sv := serve(t, s)
	sp := spec("hog")
	sp.Dynamic = true
	sv.send(wire.Command{Op: wire.OpRun, Spec: &sp, Binary: exe, Workers: 2, MemoryMB: 150})
	e := sv.next()
	if e.Type != wire.EventOOM || e.Index != 1 || e.Workers != 2 || !strings.Contains(e.Message, "150 MB") {
		t.Fatalf("event %+v; want oom of input 1 with 2 workers, naming the 150 MB share", e)
	}
	// The chunk goes back once the results before it are stored, as the agent hears.
	for wait := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		s.mu.Lock()
		returned := s.returned
		for _, r := range s.results {
			if r.Index == 1 {
				t.Fatalf("input 1 has a result after running out of memory: %+v", r)
			}
		}
		s.mu.Unlock()
		if returned > 0 {
			break
		}
		if time.Now().After(wait) {
			t.Fatal("the chunk of input 1 was not given back to the queue")
		}
	}
	// The agent halves the node's workers: this one now has the node's memory.
	sv.send(wire.Command{Op: wire.OpResize, Workers: 1, MemoryMB: 1000})
	deadline := time.Now().Add(20 * time.Second)
	for {
		s.mu.Lock()
		done := s.done
		var got *store.Result
		for i := range s.results {
			if s.results[i].Index == 1 {
				got = &s.results[i]
			}
		}
		s.mu.Unlock()
		if done == 3 {
			if got == nil || got.Err != nil || string(got.Output) != "300" {
				t.Fatalf("input 1's result = %+v; want 300", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 3 chunks done after 20s", done)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// With the node to itself, a call that runs out of memory fails, with kind oom; a
// job whose resources are fixed fails at once whatever its workers.
func TestOutOfMemoryFailsAlone(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		dynamic bool
		workers int
	}{{"dynamic alone", true, 1}, {"fixed", false, 4}} {
		t.Run(c.name, func(t *testing.T) {
			s := &memStore{chunks: hogChunks("300")}
			sv := serve(t, s)
			sp := spec("hog")
			sp.Dynamic = c.dynamic
			sv.send(wire.Command{Op: wire.OpRun, Spec: &sp, Binary: exe, Workers: c.workers, MemoryMB: 150})
			e := sv.next()
			if e.Type != wire.EventFailed || e.Index != 0 || !strings.Contains(e.Message, "(oom)") || !strings.Contains(e.Message, "out of memory") {
				t.Fatalf("event %+v; want the job failed on input 0 out of memory", e)
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if len(s.results) != 1 || s.results[0].Err == nil || s.results[0].Err.Kind != store.KindOOM {
				t.Errorf("results %+v; want input 0 failed with kind oom", s.results)
			}
			if s.returned != 0 {
				t.Errorf("%d chunks given back; want none", s.returned)
			}
		})
	}
}
