package memblob_test

import (
	"testing"

	"github.com/burla-temporal/burla/blob"
	"github.com/burla-temporal/burla/blob/blobtest"
	"github.com/burla-temporal/burla/blob/memblob"
)

func TestContract(t *testing.T) {
	blobtest.Run(t, func(*testing.T) blob.Store { return &memblob.Store{} })
}
