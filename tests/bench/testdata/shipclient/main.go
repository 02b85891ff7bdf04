// Shipclient is the program that tests/bench ships over a slow link. `shipclient
// run` maps greet over one input on the cluster in BURLA_TEMPORAL_ADDRESS and
// BURLA_STORE_URL and prints how long RemoteParallelMap took, in milliseconds;
// `shipclient whole` puts its own executable in the store as one blob, as the
// SDK shipped programs before they went in chunks, and prints how long that took.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/burla-temporal/burla/job"
	burla "github.com/burla-temporal/burla/sdk"
)

var greet = burla.Func("greet", func(ctx context.Context, name string) (string, error) {
	return "hello, " + name, nil // the line the benchmark changes
})

func main() {
	burla.Main()
	ctx := context.Background()
	c, err := burla.Dial(ctx, burla.ConfigFromEnv())
	if err != nil {
		log.Fatal(err)
	}
	start := time.Now()
	switch os.Args[1] {
	case "run":
		out, err := burla.RemoteParallelMap(ctx, greet, []string{"world"}, burla.OnCluster(c), burla.Spinner(false))
		if err != nil {
			log.Fatal(err)
		}
		if len(out) != 1 {
			log.Fatalf("outputs %q", out)
		}
	case "whole":
		exe, err := os.Executable()
		if err != nil {
			log.Fatal(err)
		}
		f, err := os.Open(exe)
		if err != nil {
			log.Fatal(err)
		}
		defer f.Close()
		if err := c.Store().Put(ctx, job.BinaryKeyFor(job.DefaultTenant, "whole-"+fmt.Sprint(start.UnixNano())), f); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println(time.Since(start).Milliseconds())
}
