package deploy

import (
	"strconv"
	"strings"
	"testing"
)

// jaegerTraceBytes is what one of the platform's traces holds of Jaeger's heap in its in-memory store: 7,160 B, for
// the traces a minute of the compose load profile produced (e2e/cmd/loadgen -rate 30 -users 4 -login-ratio 0.001
// against var/bin/shanhai, OTLP captured and loaded into jaeger v1.64.0's plugin/storage/memory at a cap of 20,000
// traces through the collector-contrib translator all-in-one uses: 136.6 MiB; 5 spans a trace on average).
const jaegerTraceBytes = 7160

// checkJaeger says what is wrong with Jaeger's in-memory store under a container memory limit of limit bytes: the
// store at its cap (MEMORY_MAX_TRACES) must fit in half of a GOMEMLIMIT set 70-90 % of the limit, the other half for
// the rest of Jaeger (collector queues, queries). Jaeger ran capped at 20,000 traces, 137 MiB of live heap, with no
// GOMEMLIMIT in 256 MiB: the Go runtime lets the heap grow to twice what is live before it collects, past the limit,
// and the container is killed once the cap fills (about 6 h of the compose load profile; minutes at 250 orders/s).
func checkJaeger(env map[string]string, limit int64) []string {
	var errs []string
	if err := checkGOMEMLIMIT(env["GOMEMLIMIT"], 0, limit); err != nil {
		errs = append(errs, err.Error())
	}
	traces, err := strconv.ParseInt(env["MEMORY_MAX_TRACES"], 10, 64)
	if err != nil || traces <= 0 {
		return append(errs, "MEMORY_MAX_TRACES unset: the in-memory store grows without bound")
	}
	soft, _ := strconv.ParseInt(strings.TrimSuffix(env["GOMEMLIMIT"], "MiB"), 10, 64)
	if store := traces * jaegerTraceBytes; store > soft<<20/2 {
		errs = append(errs, "MEMORY_MAX_TRACES="+env["MEMORY_MAX_TRACES"]+" holds "+strconv.FormatInt(store>>20, 10)+
			" MiB of traces, more than half of GOMEMLIMIT "+strconv.Quote(env["GOMEMLIMIT"]))
	}
	return errs
}

// TestJaegerHoldsItsTraceCap: Jaeger's trace cap fits its memory, in compose and in the in-cluster observability
// (checkJaeger says how).
func TestJaegerHoldsItsTraceCap(t *testing.T) {
	s, ok := loadCompose(t).Services["jaeger"]
	if !ok || s.Deploy == nil || s.Deploy.Resources.Limits == nil {
		t.Fatal("compose: no jaeger service with a memory limit: follow it here")
	}
	env := map[string]string{}
	for k, v := range s.Environment {
		env[k] = value(v)
	}
	for _, e := range checkJaeger(env, int64(s.Deploy.Resources.Limits.MemoryBytes)) {
		t.Errorf("compose jaeger: %s", e)
	}
	where, c := kindContainer(t, "jaeger")
	env = map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	for _, e := range checkJaeger(env, c.Resources.Limits.Memory().Value()) {
		t.Errorf("%s: %s", where, e)
	}
}
