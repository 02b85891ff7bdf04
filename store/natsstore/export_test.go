package natsstore

import "time"

// SetListTimeout sets listTimeout for a test and returns what restores it.
func SetListTimeout(d time.Duration) func() {
	old := listTimeout
	listTimeout = d
	return func() { listTimeout = old }
}

// Global is the store of the global account, on which t's own connection is.
func (t *Tenants) Global() *Store { return t.global }
