package integration_test

import "sync"

// concurrently runs f(0) .. f(n-1), each in its own goroutine, waits for
// all of them and returns the first error any returned (nil if none did).
func concurrently(n int, f func(g int) error) error {
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for g := range n {
		wg.Go(func() {
			if err := f(g); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}
