// Command healthprobe is the container healthcheck for Shanhai's distroless
// images: they have no shell, curl or wget, so compose runs this 2 MB static
// binary instead. It GETs one URL and exits 0 on a 2xx answer, 1 otherwise.
//
//	healthprobe http://127.0.0.1:8082/readyz
package main

import (
	"fmt"
	"net/http"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: healthprobe <url>")
		os.Exit(2)
	}
	if err := probe(os.Args[1], timeout); err != nil {
		fmt.Fprintln(os.Stderr, "healthprobe:", err)
		os.Exit(1)
	}
}

// timeout is how long the probe waits for an answer: longer than the 2 s /readyz gives its checks (pkg/server's
// ReadyTimeout), so a check that passes slowly is not a failed healthcheck and a failing one is reported as its 503,
// and shorter than compose's healthcheck timeout (3 s), which kills the probe and drops what it would have printed.
const timeout = 2500 * time.Millisecond

func probe(url string, timeout time.Duration) error {
	client := http.Client{Timeout: timeout}
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return nil
}
