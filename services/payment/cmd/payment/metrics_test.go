package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestFreshProcessExportsEverySettleFailureReasonAtZero scrapes a payment process that has not run a settle round
// yet (the first is a minute after start): shanhai_payment_settle_failures_total has a series at 0 for every reason.
// PaymentSettleRoundFailing reads the counter with increase(), which needs two samples of a series: a series born at
// 1 by a process's first failure shows no increase, so that failure was never seen. Before, the counter had no
// series at all until something failed. The provider's calls, which a dashboard panel reads with rate(), likewise
// have every result at 0.
func TestFreshProcessExportsEverySettleFailureReasonAtZero(t *testing.T) {
	e, _ := newPaymentEnv(t)
	in := e.Start(t)
	body := scrape(t, in.Addr)
	for _, reason := range []string{"provider", "database", "purge"} {
		if v, ok := sample(body, "shanhai_payment_settle_failures_total", "reason", reason); !ok || v != "0" {
			t.Errorf(`shanhai_payment_settle_failures_total{reason=%q} = %q (found %v); want a series at 0`, reason, v, ok)
		}
	}
	// The saga dashboard plots rate(shanhai_payment_provider_calls_total[1m]) by result: a result's first call in a
	// process was missing there the same way.
	for _, result := range []string{"approved", "replayed", "fault", "refunded", "refund_replayed", "refund_fault",
		"refund_unrecorded", "refund_declined", "voided", "void_refunded", "void_replayed", "void_fault", "cut_off"} {
		if v, ok := sample(body, "shanhai_payment_provider_calls_total", "result", result); !ok || v != "0" {
			t.Errorf(`shanhai_payment_provider_calls_total{result=%q} = %q (found %v); want a series at 0`, result, v, ok)
		}
	}
	// The consumer's pull stops and given-up messages, which an alert reads with increase() too.
	for _, name := range []string{"shanhai_payment_consumer_pull_stops_total", "shanhai_payment_consumer_given_up_total"} {
		if v, ok := sample(body, name, "otel_scope_name", "shanhai/payment"); !ok || v != "0" {
			t.Errorf("%s = %q (found %v); want a series at 0", name, v, ok)
		}
	}
	if t.Failed() {
		t.Logf("payment lines of /metrics:\n%s", grepLines(body, "shanhai_payment_"))
	}
}

// scrape returns the text of addr's /metrics.
func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d, %v", resp.StatusCode, err)
	}
	return string(b)
}

// sample is the value of the series name{label="value"} in a text exposition, and whether it is there.
func sample(body, name, label, value string) (string, bool) {
	for line := range strings.Lines(body) {
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		labels, rest, ok := strings.Cut(line[len(name)+1:], "} ")
		if !ok || !strings.Contains(","+labels+",", ","+label+`="`+value+`",`) {
			continue
		}
		// An exemplar, if any, follows the value after " # ".
		v, _, _ := strings.Cut(strings.TrimSpace(rest), " ")
		return v, true
	}
	return "", false
}

func grepLines(body, substr string) string {
	var b strings.Builder
	for line := range strings.Lines(body) {
		if strings.Contains(line, substr) {
			b.WriteString(line)
		}
	}
	return b.String()
}
