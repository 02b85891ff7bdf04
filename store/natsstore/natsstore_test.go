package natsstore_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/burla-temporal/burla/blob"
	"github.com/burla-temporal/burla/blob/blobtest"
	"github.com/burla-temporal/burla/store"
	"github.com/burla-temporal/burla/store/natsstore"
	"github.com/burla-temporal/burla/store/natsstore/natsserver"
	"github.com/burla-temporal/burla/store/storetest"
)

func newStore(t *testing.T) *natsstore.Store {
	t.Helper()
	srv, err := natsserver.Start(natsserver.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	s, err := natsstore.Connect(context.Background(), srv.URL(), "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newStore(t) })
}

func TestBlobs(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store { return newStore(t) })
}

func BenchmarkDrain(b *testing.B) {
	srv, err := natsserver.Start(natsserver.Config{StoreDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Stop()
	s, err := natsstore.Connect(context.Background(), srv.URL(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchmarkDrain(b, s)
}

// A NATS server restarted on its data keeps node records writable; one restarted
// without its data gets its streams and buckets made again by the clients that
// reconnect to it.
func TestServerRestart(t *testing.T) {
	for _, keepData := range []bool{true, false} {
		t.Run(fmt.Sprintf("keepData=%v", keepData), func(t *testing.T) {
			dir := t.TempDir()
			srv, err := natsserver.Start(natsserver.Config{StoreDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			url := srv.URL()
			_, port, _ := net.SplitHostPort(strings.TrimPrefix(url, "nats://"))
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s, err := natsstore.Connect(ctx, url, "test")
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			node := store.Node{ID: "n-1", CPUs: 2}
			if err := s.PutNode(ctx, node); err != nil {
				t.Fatal(err)
			}
			srv.Stop()
			if !keepData {
				dir = t.TempDir()
			}
			p, _ := strconv.Atoi(port)
			srv, err = natsserver.Start(natsserver.Config{StoreDir: dir, Port: p})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Stop()
			deadline := time.Now().Add(20 * time.Second)
			for {
				pctx, pcancel := context.WithTimeout(ctx, time.Second)
				err := s.PutNode(pctx, node)
				if err == nil {
					_, err = s.GetNode(pctx, node.ID)
				}
				pcancel()
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("node record still not writable 20s after the restart: %v", err)
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}

// A server whose node bucket an older burla made in memory gets it on disk.
func TestNodeBucketMovesToDisk(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, js := rawServer(t)
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "burla-nodes", TTL: store.NodeTTL, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	s, err := natsstore.Connect(ctx, srv.URL(), "test")
	if err != nil {
		t.Fatalf("open a store over an in-memory node bucket: %v", err)
	}
	defer s.Close()
	st, err := js.Stream(ctx, "KV_burla-nodes")
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.Storage; got != jetstream.FileStorage {
		t.Fatalf("node bucket storage %v; want file", got)
	}
}

// Results, logs and job records do not expire by age, however long their job
// runs: the collector deletes them once the job has ended. A server whose streams
// an older burla made with a 7-day age limit loses the limit.
func TestNothingExpiresByAge(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, js := rawServer(t)
	week := 7 * 24 * time.Hour
	for name, subject := range map[string]string{"BURLA_RESULTS": "burla.out.*", "BURLA_LOGS": "burla.log.*"} {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subject}, MaxAge: week, Storage: jetstream.FileStorage}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "burla-jobs", TTL: week, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	s, err := natsstore.Connect(ctx, srv.URL(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, name := range []string{"BURLA_RESULTS", "BURLA_LOGS", "KV_burla-jobs"} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if age := st.CachedInfo().Config.MaxAge; age != 0 {
			t.Errorf("stream %s drops messages older than %v; want no age limit", name, age)
		}
	}
}

// rawServer starts a server without keys and connects to its JetStream API
// directly, as an older burla or an operator would.
func rawServer(t *testing.T) (*natsserver.Server, jetstream.JetStream) {
	t.Helper()
	srv, err := natsserver.Start(natsserver.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return srv, js
}
