package containerworker

import "testing"

func TestDynamic(t *testing.T) {
	if !dynamic("/bin/sh") {
		t.Error("/bin/sh is dynamically linked on Debian; dynamic said no")
	}
	if dynamic("dynamic_test.go") {
		t.Error("a source file is not a dynamic executable")
	}
}
