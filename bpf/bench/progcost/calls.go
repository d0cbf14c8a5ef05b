package main

import (
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
)

// callPair is the generic call probe's programs (include/calls.h), the same in the db, httpclient and messaging
// objects.
type callPair struct {
	Enter *ebpf.Program `ebpf:"call_enter"`
	Ret   *ebpf.Program `ebpf:"call_ret"`
}

// callCookie is op 1 with no register to read and the inner-calls bit (include/calls.h, CALL_INNER), as the agent
// attaches the ops in no nesting group (HTTP client, SQL, kafka-go, NATS, Pulsar). The programs time whatever they
// are attached to: here ServeHTTP, driven by wrk as the HTTP server probe is, one call per request.
const callCookie = 1 | 1<<20

// callMethodCookie is callCookie with the request in argument register 4 (DI: ServeHTTP's *Request), so call_enter
// reads its method as it does an HTTP client call's: that call's entry makes a user-memory read anyway, the other
// ops' makes none but g.stack.hi's.
const callMethodCookie = callCookie | 4<<16

// loadCalls loads the call programs of each -call name=path.o, to be priced instead of the HTTP server probe:
// a before/after comparison of a calls.h change, alternated by round like -obj. With method, they read the request's
// method at entry as the HTTP client's calls do (callMethodCookie).
func loadCalls(objs objFlags, method bool) ([]candidate, error) {
	cookie := uint64(callCookie)
	if method {
		cookie = callMethodCookie
	}
	var out []candidate
	for _, o := range objs {
		name, path, ok := strings.Cut(o, "=")
		if !ok {
			return nil, fmt.Errorf("-call %q: want name=path.o", o)
		}
		spec, err := ebpf.LoadCollectionSpec(path)
		if err != nil {
			return nil, err
		}
		var p callPair
		if err := spec.LoadAndAssign(&p, nil); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, candidate{name: "calls " + name, enter: p.Enter, ret: p.Ret, cookie: cookie})
	}
	return out, nil
}
