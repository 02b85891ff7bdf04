package natsstore_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/store"
	"github.com/burla-temporal/burla/store/natsstore"
	"github.com/burla-temporal/burla/store/natsstore/natsserver"
)

// cutter is a TCP proxy to a NATS server that, once armed, cuts the connection at
// the first client write containing a marker, after which it passes that write on
// to the server: the server gets the request and its reply is lost, as when a
// server restarts with a request in flight. The client reconnects through the
// proxy.
type cutter struct {
	ln     net.Listener
	target string
	marker atomic.Pointer[[]byte]
	cuts   atomic.Int32
	muteAt atomic.Pointer[[]byte] // a marker after which the server's bytes are dropped
	mute   atomic.Bool
	wg     sync.WaitGroup
}

func newCutter(t *testing.T, target string) *cutter {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{ln: ln, target: strings.TrimPrefix(target, "nats://")}
	c.wg.Add(1)
	go c.serve()
	t.Cleanup(func() { ln.Close(); c.wg.Wait() })
	return c
}

func (c *cutter) url() string { return "nats://" + c.ln.Addr().String() }

// arm makes the proxy cut the connection after the next write containing marker.
func (c *cutter) arm(marker string) { b := []byte(marker); c.marker.Store(&b) }

// armMute makes the proxy drop all the server's bytes from the next read that
// contains marker on, keeping the connection open: a server that stopped
// answering mid-way, as one restarting does before the client notices.
func (c *cutter) armMute(marker string) { b := []byte(marker); c.muteAt.Store(&b) }

func (c *cutter) serve() {
	defer c.wg.Done()
	for {
		client, err := c.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", c.target)
		if err != nil {
			client.Close()
			continue
		}
		cut := sync.OnceFunc(func() { client.Close(); server.Close() })
		c.wg.Add(2)
		go func() {
			defer c.wg.Done()
			defer cut()
			buf := make([]byte, 64<<10)
			for {
				n, err := server.Read(buf)
				if m := c.muteAt.Load(); n > 0 && m != nil && bytes.Contains(buf[:n], *m) && c.muteAt.CompareAndSwap(m, nil) {
					c.mute.Store(true) // from this read on the server says nothing
				}
				if n > 0 && !c.mute.Load() {
					if _, werr := client.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
		go func() {
			defer c.wg.Done()
			defer cut()
			buf := make([]byte, 64<<10)
			for {
				n, err := client.Read(buf)
				if n > 0 {
					if m := c.marker.Load(); m != nil && bytes.Contains(buf[:n], *m) && c.marker.CompareAndSwap(m, nil) {
						// The client is cut off first, so that no reply reaches it;
						// then the server gets the request.
						client.Close()
						server.Write(buf[:n])
						c.cuts.Add(1)
						return
					}
					if _, werr := server.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

// proxied connects a store to a new server through a cutter.
func proxied(ctx context.Context, t *testing.T) (*natsstore.Store, *cutter) {
	t.Helper()
	srv, err := natsserver.Start(natsserver.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	proxy := newCutter(t, srv.URL())
	s, err := natsstore.Connect(ctx, proxy.url(), "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, proxy
}

// A write whose reply is lost is made again after a few seconds, not awaited to
// the caller's deadline, and is stored once.
func TestLostReplyIsRetried(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, proxy := proxied(ctx, t)
	id := job.NewID(time.Now(), "acme")
	spec := job.Spec{ID: id, Function: "f", Binary: fmt.Sprintf("%064d", 0), Inputs: 1, FuncCPU: 1, Lease: 5 * time.Second, ClientTimeout: time.Minute}
	if err := s.CreateJob(ctx, spec); err != nil {
		t.Fatal(err)
	}
	// The committer gives each write 30 s; a lost reply must cost far less.
	const callerDeadline = 30 * time.Second
	writes := []struct {
		name, marker string
		write        func(ctx context.Context) error
	}{
		{"results", "burla.out." + id, func(ctx context.Context) error {
			return s.PutResults(ctx, id, []store.Result{{Index: 0, Output: []byte("r")}})
		}},
		{"chunks", "burla.in." + id, func(ctx context.Context) error {
			return s.PutChunks(ctx, id, []store.Chunk{{Seq: 0, Items: []store.Item{{Index: 0, Data: []byte("x")}}}})
		}},
		{"heartbeat", id + ".hb", func(ctx context.Context) error { return s.Heartbeat(ctx, id) }},
	}
	for _, w := range writes {
		proxy.arm(w.marker)
		before := proxy.cuts.Load()
		wctx, wcancel := context.WithTimeout(ctx, callerDeadline)
		began := time.Now()
		err := w.write(wctx)
		took := time.Since(began)
		wcancel()
		if err != nil {
			t.Fatalf("%s: %v", w.name, err)
		}
		if proxy.cuts.Load() == before {
			t.Fatalf("%s: the proxy never cut the connection; the test proves nothing", w.name)
		}
		if took > 10*time.Second {
			t.Errorf("%s took %v with its reply lost; want it made again within seconds", w.name, took)
		}
		t.Logf("%s: stored %v after its reply was lost", w.name, took.Round(time.Millisecond))
	}
	// Each write is stored once.
	var results int
	var mu sync.Mutex
	wa, err := s.WatchResults(ctx, id, func(rs []store.Result) { mu.Lock(); results += len(rs); mu.Unlock() })
	if err != nil {
		t.Fatal(err)
	}
	defer wa.Close()
	if err := wa.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if results != 1 {
		t.Errorf("%d results stored; want the one written, once", results)
	}
	mu.Unlock()
	p, err := s.Progress(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if p.Waiting != 1 {
		t.Errorf("%d chunks queued; want the one written, once", p.Waiting)
	}
}

// A listing of the shared files whose server stops answering mid-way ends, with
// an error, even when its caller (a worker between calls) set no deadline: a
// listing that waits for ever would hold the worker, and the chunk it leases,
// for ever (TestRestartNATS caught two workers so, in nats.go's listing watch
// after the server restarted). Each attempt has listTimeout, and three are made.
func TestListEndsWhenTheServerStopsAnswering(t *testing.T) {
	defer natsstore.SetListTimeout(500 * time.Millisecond)()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, proxy := proxied(ctx, t)
	if err := s.Put(ctx, job.SharedKey("acme", "a.txt"), strings.NewReader("a")); err != nil {
		t.Fatal(err)
	}
	proxy.armMute("$O.burla-shared.M.") // the listing's first object record
	done := make(chan error, 1)
	began := time.Now()
	go func() {
		_, err := s.List(context.Background(), job.SharedPrefix("acme"))
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("List succeeded although the server said nothing; the test proves nothing")
		}
		t.Logf("List gave up after %v: %v", time.Since(began).Round(time.Millisecond), err)
	case <-time.After(5 * time.Second):
		t.Fatal("List still waiting 5s after the server stopped answering; want three attempts of 0.5s")
	}
}
