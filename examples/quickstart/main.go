// Quickstart maps double over [1, 2, 3] on a cluster: each call prints its input,
// on a worker of its own, and the outputs come back in order.
//
//	burla dev &            # in another terminal
//	go run ./examples/quickstart
package main

import (
	"context"
	"fmt"
	"log"

	burla "github.com/burla-temporal/burla/sdk"
)

var double = burla.Func("double", func(ctx context.Context, x int) (int, error) {
	fmt.Println(x)
	return x * 2, nil
})

func main() {
	burla.Main()
	out, err := burla.RemoteParallelMap(context.Background(), double, []int{1, 2, 3})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(out)
}
