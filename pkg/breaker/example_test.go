package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/breaker"
)

func Example() {
	b := breaker.New("user", breaker.Settings{MinRequests: 5, FailureRatio: 0.5, OpenBase: time.Minute})
	defer b.Close()

	call := func() (status int, err error) { return http.StatusServiceUnavailable, nil } // a sick upstream
	for range 10 {
		report, err := b.Guard(context.Background())
		if errors.Is(err, breaker.ErrOpen) {
			fmt.Println("rejected without calling: breaker", b.State())
			break
		}
		status, err := call()
		report(err, status)
	}
	// Output: rejected without calling: breaker open
}
