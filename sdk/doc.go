// Package burla runs a Go function over many inputs on many machines at once.
//
// A program registers its functions at package level and calls Main first:
//
//	var double = burla.Func("double", func(ctx context.Context, x int) (int, error) {
//		fmt.Println(x)
//		return 2 * x, nil
//	})
//
//	func main() {
//		burla.Main()
//		out, err := burla.RemoteParallelMap(ctx, double, []int{1, 2, 3})
//		...
//	}
//
// The program ships itself: RemoteParallelMap uploads the running executable once
// (content-addressed), and each container worker on the cluster runs it in worker
// mode, where Main serves the registered functions and never returns. Inputs and
// outputs are encoded as JSON. What a call prints is streamed back to the caller's
// stdout and stderr, attributed to its input; outputs come back in input order.
//
// The cluster is found through BURLA_TEMPORAL_ADDRESS (default 127.0.0.1:7233),
// BURLA_NAMESPACE (default "default") and BURLA_STORE_URL (default
// nats://127.0.0.1:4222; firestore://PROJECT?bucket=BUCKET on Google Cloud, for a
// program that imports _ "github.com/burla-temporal/burla/store/firestorestore"),
// which are the defaults of `burla dev`.
package burla
