// Package gcpe2e runs the SDK against a `burla dev` whose data plane is the Google
// Cloud one: the Firestore store on the official Firestore emulator and the GCS blob
// store on fake-gcs-server, both on loopback. Node agents and container workers
// inherit FIRESTORE_EMULATOR_HOST and STORAGE_EMULATOR_HOST, as the processes of a
// real cluster inherit their credentials. A missing emulator fails the suite.
package gcpe2e

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"

	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/store"
	_ "github.com/burla-temporal/burla/store/firestorestore" // this program is a client of a Firestore-backed cluster
	"github.com/burla-temporal/burla/store/firestorestore/emulator"
	"github.com/burla-temporal/burla/tests/clustertest"
)

const (
	project = "burla-e2e"
	bucket  = "burla-e2e-blobs"
)

var (
	dev *clustertest.Dev
	gcs *fakestorage.Server
)

// gcsHas reports whether the fake GCS holds the object.
func gcsHas(t *testing.T, object string) bool {
	_, err := gcs.GetObject(bucket, object)
	return err == nil
}

func TestMain(m *testing.M) {
	burla.Main()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx := context.Background()
	emu, err := emulator.Start(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: gcpe2e needs the Firestore emulator:", err)
		return 1
	}
	defer emu.Stop()
	gcs, err = fakestorage.NewServerWithOptions(fakestorage.Options{Scheme: "http", Host: "127.0.0.1", PublicHost: "127.0.0.1"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "gcpe2e: fake GCS:", err)
		return 1
	}
	defer gcs.Stop()
	gcs.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: bucket})
	u, _ := url.Parse(gcs.URL())
	os.Setenv("FIRESTORE_EMULATOR_HOST", emu.Host())
	os.Setenv("STORAGE_EMULATOR_HOST", u.Host)

	dev, err = clustertest.Start(ctx, clustertest.Options{Nodes: 2, CPUs: 2,
		StoreURL: fmt.Sprintf("firestore://%s?bucket=%s&prefix=e2e", project, bucket)})
	if err != nil {
		fmt.Fprintln(os.Stderr, "gcpe2e: start cluster:", err)
		return 1
	}
	code := m.Run()
	dev.Keep = code != 0
	if err := dev.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "gcpe2e: stop cluster:", err)
		code = 1
	}
	return code
}

var (
	double = burla.Func("double", func(ctx context.Context, x int) (int, error) {
		fmt.Println(x)
		return 2 * x, nil
	})
	square = burla.Func("square", func(ctx context.Context, x int) (int, error) {
		return x * x, nil
	})
	// reverse returns its input reversed: large inputs and outputs go through GCS.
	reverse = burla.Func("reverse", func(ctx context.Context, s string) (string, error) {
		b := []byte(s)
		slices.Reverse(b)
		return string(b), nil
	})
	panicky = burla.Func("panicky", func(ctx context.Context, x int) (int, error) {
		if x == 2 {
			panic(fmt.Sprintf("input %d panics", x))
		}
		return x, nil
	})
)

func opts(extra ...burla.Option) []burla.Option {
	return append([]burla.Option{burla.OnCluster(dev.Cluster), burla.Spinner(false), burla.OnLog(func(burla.LogLine) {})}, extra...)
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestThreeInputsWithLogs(t *testing.T) {
	var mu sync.Mutex
	got := map[int]string{}
	out, err := burla.RemoteParallelMap(testCtx(t, 2*time.Minute), double, []int{1, 2, 3},
		append(opts(), burla.OnLog(func(l burla.LogLine) { mu.Lock(); got[l.Index] = l.Text; mu.Unlock() }))...)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out, []int{2, 4, 6}) {
		t.Errorf("outputs %v; want [2 4 6]", out)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 || got[0] != "1" || got[1] != "2" || got[2] != "3" {
		t.Errorf("printed %v; want 1, 2, 3 from inputs 0, 1, 2", got)
	}
}

func TestThousandInputsInOrder(t *testing.T) {
	in := make([]int, 1000)
	for i := range in {
		in[i] = i
	}
	out, err := burla.RemoteParallelMap(testCtx(t, 3*time.Minute), square, in, opts()...)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("%d outputs; want %d", len(out), len(in))
	}
	for i, o := range out {
		if o != i*i {
			t.Fatalf("output %d = %d; want %d", i, o, i*i)
		}
	}
}

// Inputs and outputs larger than a record may inline are blobs in the bucket.
func TestLargeValuesThroughGCS(t *testing.T) {
	big := strings.Repeat("abcdefgh", store.MaxInlineBytes/8+1000)
	in := []string{big, "small", big[:1000] + "z"}
	out, err := burla.RemoteParallelMap(testCtx(t, 2*time.Minute), reverse, in, opts()...)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range in {
		b := []byte(s)
		slices.Reverse(b)
		if out[i] != string(b) {
			t.Errorf("output %d has %d bytes, not the reversed %d-byte input", i, len(out[i]), len(s))
		}
	}
}

func TestPanicIsARemoteError(t *testing.T) {
	_, err := burla.RemoteParallelMap(testCtx(t, 2*time.Minute), panicky, []int{0, 1, 2, 3}, opts()...)
	var re *burla.RemoteError
	if !errors.As(err, &re) || re.Index != 2 || !strings.Contains(re.Message, "input 2 panics") {
		t.Fatalf("error %v; want a RemoteError for input 2 that says it panics", err)
	}
	out, err := burla.RemoteParallelMap(testCtx(t, time.Minute), square, []int{1, 2, 3}, opts()...)
	if err != nil || !slices.Equal(out, []int{1, 4, 9}) {
		t.Errorf("the job after a failed one: %v, %v; want [1 4 9]", out, err)
	}
}
