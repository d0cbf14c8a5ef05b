//go:build ignore

// HTTP client calls: net/http.(*Transport).roundTrip, timed entry to every RET, with the request method and response status (or error).
// The programs are the generic ones in include/calls.h; the agent tells them apart by attach cookie.
#include "calls.h"
