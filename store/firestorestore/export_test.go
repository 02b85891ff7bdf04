package firestorestore

import "time"

// SetListenerWindow sets how many documents a watch takes before it restarts its
// listener, and returns a function that puts it back.
func SetListenerWindow(n int) func() {
	old := listenerWindow
	listenerWindow = n
	return func() { listenerWindow = old }
}

// SetLocalClock replaces the clock s takes for this machine's, as a machine whose
// clock is off would have it.
func SetLocalClock(s *Store, now func() time.Time) { s.clock.local = now }
