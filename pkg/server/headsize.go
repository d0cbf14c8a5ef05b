package server

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/shanhai-dev/shanhai/pkg/problem"
)

// MaxHeaderBytes bounds a request's line and header fields: a request whose
// head cannot have been sent in fewer bytes is a 431 problem+json before any
// handler runs (oversizedHead). It is net/http's default limit, the one the
// services had.
//
// net/http answers a head over its own limit with a 431 in plain text,
// before any handler, so no problem+json can be made of it: that limit
// (serverHeaderBytes, past which it reads 4 KiB more) is set 64 KiB above
// this one, so a head a little too long, the usual mistake (cookies piling
// up), is answered in the API's error format, and only one longer still is
// refused in plain text. The price is 64 KiB more a connection may hold
// while its head is read. The gateway caps heads at 16 KiB, far below
// either.
const MaxHeaderBytes = http.DefaultMaxHeaderBytes

// serverHeaderBytes is http.Server.MaxHeaderBytes.
const serverHeaderBytes = MaxHeaderBytes + 64<<10

// oversizedHead answers 431 when the request's head is over MaxHeaderBytes.
func oversizedHead(c *gin.Context) {
	if headBytes(c.Request) <= MaxHeaderBytes {
		return
	}
	problem.Abort(c, http.StatusRequestHeaderFieldsTooLarge,
		"the request line and headers exceed "+strconv.Itoa(MaxHeaderBytes)+" bytes")
}

// headBytes is the fewest bytes r's request line and header fields can have
// been sent in: no optional white space ("Name:value"), the Host field that
// net/http moves out of Header counted back. It never exceeds what net/http
// read, so a head within MaxHeaderBytes as sent is never refused; white
// space makes what was read at most a little longer. A request line naming
// its host (absolute form) gives r.Host, and any Host field is dropped
// unseen, so none is counted. The fields are summed, not copied: a request
// pays one pass over its header map.
func headBytes(r *http.Request) int {
	n := len(r.Method) + len(" ") + len(r.RequestURI) + len(" ") + len(r.Proto) + len("\r\n")
	if r.URL.Host == "" && r.Host != "" {
		n += len("Host:") + len(r.Host) + len("\r\n")
	}
	for name, values := range r.Header {
		for _, v := range values {
			n += len(name) + len(":") + len(v) + len("\r\n")
		}
	}
	return n + len("\r\n")
}
