package nodeagent

import (
	"fmt"
	"slices"
	"syscall"
)

// DefaultMinFreeDisk is how much free space a node's disk must keep before its
// agent calls the disk full.
const DefaultMinFreeDisk = 256 << 20

// diskCheck watches the file systems of a node's directories. A node whose disk
// fills cannot fetch the next job's program or let its workers write, so once the
// free space of any of them falls below min the agent reports a fault in its
// record, and the cluster replaces the node (its work moves to other nodes).
type diskCheck struct {
	dirs []string
	min  int64
}

func newDiskCheck(min int64, dirs ...string) *diskCheck {
	slices.Sort(dirs)
	return &diskCheck{dirs: slices.Compact(dirs), min: min}
}

// free returns the least free space, in bytes, among the directories'
// file systems, and the directory it was found in.
func (d *diskCheck) free() (int64, string, error) {
	least, where := int64(-1), ""
	for _, dir := range d.dirs {
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); err != nil {
			return 0, dir, fmt.Errorf("free space under %s: %w", dir, err)
		}
		if free := int64(st.Bavail) * int64(st.Bsize); least < 0 || free < least {
			least, where = free, dir
		}
	}
	return least, where, nil
}

// fault says why the node cannot go on, or "" while its disks have room.
func (d *diskCheck) fault() string {
	free, dir, err := d.free()
	switch {
	case err != nil:
		return "" // a directory the check cannot read says nothing about the disk
	case free < d.min:
		return fmt.Sprintf("disk full: %d MiB free under %s, below the %d MiB a node keeps free", free>>20, dir, d.min>>20)
	}
	return ""
}
