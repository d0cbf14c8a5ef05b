package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/interrupt"
)

// recorder keeps every latency of a run. At the rates this tool is meant for
// (thousands per second for minutes) that is a few MB, and exact percentiles
// (to the 1 µs the summary keeps) beat a histogram's bucket error; a run of
// hours would want HDR buckets.
type recorder struct {
	mu   sync.Mutex
	lat  map[string][]time.Duration
	errs map[string]map[string]int
	// saga holds by source (nats, poll) one time per order this run created:
	// to PAID, to FAILED (class sagaFailed in sagaErrs) or, for an order the
	// source never saw end, its age when the run ended (sagaUnfinished).
	saga     map[string][]time.Duration
	sagaErrs map[string]map[string]int
	// samples keeps the first answer of each op and error class, which
	// usually says who refused (a problem+json title, a dial error).
	samples map[string]string
	start   time.Time
	sent    int64
	done    int64
	failed  int64
	// lastAnswer is by op the time from start to its last answer: an op's
	// rate is over at least that long (see summary).
	lastAnswer map[string]time.Duration
	dropped    map[string]int // by op: due but not sent, at the -max-inflight bound
	limited    map[string]int // by op: answered 429 by a rate limit, not counted as errors
}

func newRecorder() *recorder {
	return &recorder{lat: map[string][]time.Duration{}, errs: map[string]map[string]int{}, saga: map[string][]time.Duration{},
		sagaErrs: map[string]map[string]int{}, samples: map[string]string{}, lastAnswer: map[string]time.Duration{}, dropped: map[string]int{}, limited: map[string]int{}}
}

func (r *recorder) sentOne() {
	r.mu.Lock()
	r.sent++
	r.mu.Unlock()
}

// result records one request: its latency from the intended start and its
// class ("" when it succeeded, limitedClass when a limit refused it). A
// limited answer is counted apart, out of count, req/s and the percentiles,
// as a dropped request is: refused in well under a millisecond, it would
// make a heavily limited run look fast.
//
// A request the interrupt cut (classInterrupted) got no answer: it is not
// done, so the summary's "unanswered (run interrupted)" counts it (that
// figure was always 0, every cut request counted answered), and its end is
// no answer an op's rate runs to. It stays in count and the percentiles,
// timed to the interrupt, a lower bound as an unfinished saga's is: the
// requests a stall held when Ctrl-C came are the ones the tail must show.
func (r *recorder) result(op string, d time.Duration, class string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if class != classInterrupted {
		r.done++
		if !r.start.IsZero() {
			r.lastAnswer[op] = max(r.lastAnswer[op], time.Since(r.start))
		}
	}
	if class == limitedClass {
		r.limited[op]++
		return
	}
	r.lat[op] = append(r.lat[op], d)
	if class != "" {
		r.failed++
		if r.errs[op] == nil {
			r.errs[op] = map[string]int{}
		}
		r.errs[op][class]++
	}
}

// drop records a request that was due but not sent. It has no latency.
func (r *recorder) drop(op string) {
	r.mu.Lock()
	r.dropped[op]++
	r.mu.Unlock()
}

func (r *recorder) sample(op, class, text string) {
	if len(text) > 200 {
		text = text[:200]
	}
	r.mu.Lock()
	if _, ok := r.samples[op+" "+class]; !ok {
		r.samples[op+" "+class] = text
	}
	r.mu.Unlock()
}

// Saga classes other than paid ("").
const (
	sagaFailed = "failed" // the order ended FAILED (payment.failed)
	// sagaUnfinished is an order the source had not seen end when the run
	// ended; its time is its age then, a lower bound of its saga. Left out,
	// the percentiles would describe only the sagas that went well, and a
	// saga stuck behind a stalled consumer would make the figures look better.
	sagaUnfinished = "unfinished"
)

// sagaDone records one order's saga as a source saw it: d from its creation
// to PAID (class ""), to FAILED (sagaFailed), or to the run's end
// (sagaUnfinished).
func (r *recorder) sagaDone(source string, d time.Duration, class string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.saga[source] = append(r.saga[source], d)
	if class != "" {
		if r.sagaErrs[source] == nil {
			r.sagaErrs[source] = map[string]int{}
		}
		r.sagaErrs[source][class]++
	}
}

// limitedClass is a 429: a documented limit (the gateway's per-IP, log in or
// per-user rate, the user service's login guard) answered as configured. It
// is counted apart from errors, which are the platform failing, so a run
// against the default limits reports how much they refused instead of
// looking broken; the request is not retried (its slot in the schedule has
// passed, and a retry would be a request nobody scheduled).
const limitedClass = "limited (http 429)"

// classOutOfFDs is a request this process had no file descriptor to send.
const classOutOfFDs = "client: out of file descriptors"

// classInterrupted is a request Ctrl-C or SIGTERM cut before its answer.
const classInterrupted = "canceled (run interrupted)"

// classify names an error the way an operator triages it.
func classify(status int, err error) string {
	switch {
	case err == nil && status >= 200 && status < 300:
		return ""
	case err == nil && status == http.StatusTooManyRequests:
		return limitedClass
	case err == nil:
		return fmt.Sprintf("http %d", status)
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled), isInterrupt(err):
		return classInterrupted
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		// The client's own limit, met before a packet left (each request in
		// flight holds a descriptor, and a target that hangs keeps them):
		// "connect" would blame the target.
		return classOutOfFDs
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		if oe.Op == "dial" {
			return "connect"
		}
		return "io: " + oe.Op // a reset or broken pipe on a connection that was up
	}
	return "other"
}

// isInterrupt is an error that is the signal which ended the run: the run's
// context ends with it as its cause (pkg/interrupt keeps it for the exit
// status), and net/http returns a context's cause in place of
// context.Canceled.
func isInterrupt(err error) bool {
	_, ok := interrupt.Status(err)
	return ok
}

// Stat is one row of the summary.
type Stat struct {
	Count int `json:"count"`
	// PerSec is Count, less the requests the interrupt cut, per second of
	// the sending time (-duration), or of the time from the start to the
	// op's last answer when that is longer.
	PerSec   float64        `json:"per_sec"`
	P50Ms    float64        `json:"p50_ms"`
	P90Ms    float64        `json:"p90_ms"`
	P99Ms    float64        `json:"p99_ms"`
	P999Ms   float64        `json:"p99_9_ms"`
	MaxMs    float64        `json:"max_ms"`
	Errors   map[string]int `json:"errors,omitempty"`
	ErrCount int            `json:"error_count"`
	// Dropped requests were due but not sent (-max-inflight): not in Count,
	// PerSec or the percentiles, which are over requests sent and answered.
	Dropped int `json:"dropped"`
	// Limited requests were answered 429: not in Count, PerSec or the
	// percentiles (a fast refusal would make a limited run look fast),
	// nor in Errors or ErrCount.
	Limited int `json:"limited"`
}

// Summary is the -json output.
type Summary struct {
	Target        string            `json:"target"`
	RateOrders    float64           `json:"rate_orders_per_sec"`
	DurationSec   float64           `json:"duration_sec"`
	Sent          int64             `json:"sent"`
	Done          int64             `json:"done"`
	Dropped       int64             `json:"dropped"`
	Ops           map[string]Stat   `json:"ops"`
	Total         Stat              `json:"total"`
	Saga          map[string]Stat   `json:"saga"`
	Stages        map[string]Stat   `json:"saga_stages,omitempty"`
	OrdersPending int               `json:"orders_not_seen_final_by_poll"`
	ErrorSamples  map[string]string `json:"error_samples,omitempty"`
}

func stat(ds []time.Duration, errs map[string]int, secs float64) Stat {
	s := Stat{Count: len(ds), Errors: errs}
	for _, n := range errs {
		s.ErrCount += n
	}
	if secs > 0 {
		// A request the interrupt cut is in the count and percentiles, timed
		// to the interrupt, but it got no answer: counted in the rate, the
		// requests a stall held when Ctrl-C came made it the rate sent at.
		s.PerSec = float64(len(ds)-errs[classInterrupted]) / secs
	}
	if len(ds) == 0 {
		return s
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	// Nearest rank: the pth percentile is the smallest sample with at least
	// p of all samples at or below it, rank ⌈p·n⌉. Rounding p·n instead (as
	// this did) reported the 1598th of 1600 as p99.9, under-stating the tail.
	// Per mille in integers, so no float error moves a rank.
	q := func(perMille int) float64 {
		rank := (perMille*len(ds) + 999) / 1000
		return ms(ds[max(rank, 1)-1])
	}
	s.P50Ms, s.P90Ms, s.P99Ms, s.P999Ms, s.MaxMs = q(500), q(900), q(990), q(999), ms(ds[len(ds)-1])
	return s
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (r *recorder) summary(target string, rate float64, secs float64, pending int) Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Summary{Target: target, RateOrders: rate, DurationSec: secs, Sent: r.sent, Done: r.done,
		Ops: map[string]Stat{}, Saga: map[string]Stat{}, OrdersPending: pending, ErrorSamples: r.samples}
	var all []time.Duration
	allErrs, limited := map[string]int{}, 0
	for op := range r.lat {
		s.Ops[op] = Stat{}
	}
	for op := range r.dropped {
		s.Ops[op] = Stat{} // an op whose every request was dropped or limited still has a row
	}
	for op := range r.limited {
		s.Ops[op] = Stat{}
	}
	// An op's rate is over the time from the start to its last answer, when
	// that is longer than the sending: a server answering half as fast as
	// it is sent to, with the answers still coming in after -duration, would
	// otherwise be credited with the rate it was sent at.
	window := func(op string) float64 { return max(secs, r.lastAnswer[op].Seconds()) }
	allSecs := secs
	for op := range s.Ops {
		ds := r.lat[op]
		st := stat(ds, r.errs[op], window(op))
		st.Dropped, st.Limited = r.dropped[op], r.limited[op]
		s.Ops[op] = st
		s.Dropped += int64(st.Dropped)
		if op == opDrainPoll {
			continue // not the mix: "all" is what the schedule sent (see opDrainPoll)
		}
		allSecs = max(allSecs, window(op))
		limited += st.Limited
		all = append(all, ds...)
		for c, n := range r.errs[op] {
			allErrs[c] += n
		}
	}
	s.Total = stat(all, allErrs, allSecs)
	s.Total.Dropped, s.Total.Limited = int(s.Dropped)-s.Ops[opDrainPoll].Dropped, limited
	for src, ds := range r.saga {
		s.Saga[src] = stat(ds, r.sagaErrs[src], secs)
	}
	return s
}

// write prints the summary as the table or, for scripts, as JSON; both carry
// the same figures (the table's to 0.1 ms).
func (s Summary) write(w io.Writer, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(s); err != nil {
			return fmt.Errorf("write summary: %w", err)
		}
		return nil
	}
	if err := s.table(w); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	return nil
}

// table prints the summary as text and returns the first write error. The
// error matters since main notifies SIGPIPE: a summary that met a broken
// pipe (`loadgen | head -1`) is no longer a death by signal, and a run whose
// figures nobody received must not exit 0.
func (s Summary) table(out io.Writer) error {
	sticky := &firstErrWriter{w: out}
	w := io.Writer(sticky)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "op\tcount\treq/s\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\terrors\tlimited\tdropped\t\n")
	row := func(name string, st Stat) {
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%d\t%d\t\n", name, st.Count, st.PerSec, st.P50Ms, st.P90Ms, st.P99Ms, st.P999Ms, st.MaxMs, st.ErrCount, st.Limited, st.Dropped)
	}
	for _, op := range sortedKeys(s.Ops) {
		row(op, s.Ops[op])
	}
	row("all", s.Total)
	for _, src := range sortedKeys(s.Saga) {
		row("saga ("+src+")", s.Saga[src])
	}
	for _, st := range sortedKeys(s.Stages) {
		row("  "+st, s.Stages[st])
	}
	tw.Flush()
	if len(s.Total.Errors) > 0 {
		fmt.Fprintln(w, "\nerrors by class:")
		for _, op := range sortedKeys(s.Ops) {
			for _, c := range sortedKeys(s.Ops[op].Errors) {
				fmt.Fprintf(w, "  %-8s %-28s %7d  e.g. %s\n", op, c, s.Ops[op].Errors[c], s.ErrorSamples[op+" "+c])
			}
		}
	}
	sagaErrs := false
	for _, src := range sortedKeys(s.Saga) {
		for _, c := range sortedKeys(s.Saga[src].Errors) {
			if !sagaErrs {
				fmt.Fprintln(w, "\nsagas that did not end PAID:")
				sagaErrs = true
			}
			fmt.Fprintf(w, "  %-8s %-28s %7d\n", src, c, s.Saga[src].Errors[c])
		}
	}
	if s.Total.Limited > 0 {
		fmt.Fprintln(w, "\nlimited (answered 429 by a rate limit; not in count, req/s, the percentiles or errors):")
		for _, op := range sortedKeys(s.Ops) {
			if n := s.Ops[op].Limited; n > 0 {
				fmt.Fprintf(w, "  %-8s %7d  e.g. %s\n", op, n, s.ErrorSamples[op+" "+limitedClass])
			}
		}
		fmt.Fprintln(w, "the platform's limits are per client address and this run comes from one: lower -rate, or lift the limits for a load run (deploy/README.md).")
	}
	fmt.Fprintf(w, "\ndue %d: answered %d, dropped %d, unanswered (run interrupted) %d; orders the polls had not yet seen PAID/FAILED when the run ended: %d\n",
		s.Sent, s.Done, s.Dropped, s.Sent-s.Done-s.Dropped, s.OrdersPending)
	fmt.Fprintln(w, "latency is measured from each request's scheduled start (open loop), so queueing in the client counts.")
	fmt.Fprintln(w, "req/s is answered per second, from the start to the op's last answer when that came after the sending ended.")
	if s.Dropped > 0 {
		fmt.Fprintln(w, "dropped: due while -max-inflight requests (one connection each) were in flight, so not sent (the client's bound, under the gateway's connection cap; not the server's answer); not in count, req/s or the percentiles.")
	}
	fmt.Fprintln(w, "saga (nats): order created (201 received) -> payment.succeeded seen on the payments subject; saga (poll): -> GET shows PAID (poll-bound upper figure).")
	fmt.Fprintln(w, "every order created is in each saga row: one that ended FAILED is an error \"failed\" timed to then; one not seen to end is \"unfinished\", timed to the run's end (a lower bound).")
	if len(s.Stages) > 0 {
		fmt.Fprintln(w, "saga stages split (nats) at each event's ce_time, Kafka record time (ms) and arrival on JetStream; 3 includes the provider's latency.")
	}
	return sticky.err
}

// firstErrWriter keeps the first error of w and refuses every write after
// it, so that a table of many Fprints is checked once, at its end, and
// stops writing where the output broke.
type firstErrWriter struct {
	w   io.Writer
	err error
}

func (f *firstErrWriter) Write(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	n, err := f.w.Write(p)
	f.err = err
	return n, err
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// progress is the live line: totals and the last second's throughput.
func (r *recorder) progress(prevDone int64, inflight int64) (string, int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	el := time.Since(r.start).Truncate(time.Second)
	nSaga := 0
	for _, ds := range r.saga {
		nSaga = max(nSaga, len(ds))
	}
	dropped, limited := 0, 0
	for _, n := range r.dropped {
		dropped += n
	}
	for _, n := range r.limited {
		limited += n
	}
	line := fmt.Sprintf("%6s sent %8d  done %8d  %6d/s  in flight %5d  errors %6d  limited %6d  dropped %6d  sagas %7d",
		el, r.sent, r.done, r.done-prevDone, inflight, r.failed, limited, dropped, nSaga)
	return strings.TrimRight(line, " "), r.done
}
