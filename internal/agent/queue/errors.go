package queue

import "errors"

// ErrNotHead is returned by Done for a batch that is not the one Next
// returned last (for example because it was dropped meanwhile).
var ErrNotHead = errors.New("batch is not the head of the queue")
