package server

import (
	"errors"
	"fmt"
	"io"

	"github.com/shanhai-dev/shanhai/pkg/config"
)

// ExitCode is a binary's exit status for the error its Run returned, so that
// every service's main ends the same way: 0 for none; 2 for a bad
// configuration (a *config.Error, the usage error config.MustLoad also
// exits 2 for), which it writes to w after "<name>: " since nothing has
// logged it; 1 for any other error, which Run has already logged.
func ExitCode(w io.Writer, name string, err error) int {
	var bad *config.Error
	switch {
	case err == nil:
		return 0
	case errors.As(err, &bad):
		fmt.Fprintf(w, "%s: %v\n", name, err)
		return 2
	default:
		return 1
	}
}
