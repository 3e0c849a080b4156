package env

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// permanentError ends a poll at once.
type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

// permanent wraps err so that poll returns it without retrying.
func permanent(err error) error { return permanentError{err} }

// poll calls f every interval until it returns nil, returns a permanent error, ctx ends or
// timeout passes; the error then names the last failure.
func poll(ctx context.Context, timeout, interval time.Duration, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		err := f()
		if err == nil {
			return nil
		}
		var p permanentError
		if errors.As(err, &p) {
			return p.err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up after %s: %w", timeout, err)
		case <-t.C:
		}
	}
}
