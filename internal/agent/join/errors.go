package join

import "fmt"

// RefusedError is the hub's answer when it refuses a join, e.g. for an
// unknown, used or expired token. Match it with errors.As and look at Code,
// never at the message text.
type RefusedError struct {
	// Status is the HTTP status code.
	Status int
	// Code is the hub's stable error code (e.g. "unauthorized"); empty when
	// the answer did not come from the hub's API.
	Code string
	// Message is the hub's explanation for people.
	Message string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("join refused: %s", e.Message)
}
