package activities

import "time"

// SetReservePoll sets how long ReserveNodes waits on one request, and returns a
// function that puts it back.
func SetReservePoll(d time.Duration) func() {
	old := reservePoll
	reservePoll = d
	return func() { reservePoll = old }
}
