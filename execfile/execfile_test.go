package execfile

import "testing"

func TestDynamic(t *testing.T) {
	if dyn, err := Dynamic("/bin/sh"); err != nil || !dyn {
		t.Errorf("Dynamic(/bin/sh) = %v, %v; Debian's sh is dynamically linked", dyn, err)
	}
	if _, err := Dynamic("execfile_test.go"); err == nil {
		t.Error("a source file was taken for an executable")
	}
}
