package firestorestore

// SetListenerWindow sets how many documents a watch takes before it restarts its
// listener, and returns a function that puts it back.
func SetListenerWindow(n int) func() {
	old := listenerWindow
	listenerWindow = n
	return func() { listenerWindow = old }
}
