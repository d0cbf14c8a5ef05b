package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMain lets a test run the command itself: with LOADGEN_TEST_MAIN set,
// the test binary is loadgen, its arguments main's flags.
func TestMain(m *testing.M) {
	if os.Getenv("LOADGEN_TEST_MAIN") != "" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Bad flags stop the command before anything is sent: exit status 2 and a
// message that names the flag. NaN and Inf used to pass the "rate > 0" check
// and panic when the schedule started.
func TestBadFlagsExit2WithAClearError(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"-rate", "-5"}, "-rate must be"},
		{[]string{"-rate", "0"}, "-rate must be"},
		{[]string{"-rate", "NaN"}, "-rate must be"},
		{[]string{"-rate", "+Inf"}, "-rate must be"},
		{[]string{"-duration", "0s"}, "-duration must be positive"},
		{[]string{"-duration", "-3s"}, "-duration must be positive"},
		{[]string{"-users", "0"}, "-users must be"},
		{[]string{"-login-ratio", "-0.5"}, "-login-ratio must be"},
		{[]string{"-login-ratio", "NaN"}, "-login-ratio must be"},
		{[]string{"-max-inflight", "0"}, "-max-inflight must be"},
		{[]string{"-timeout", "0s"}, "-timeout must be positive"},
		{[]string{"-drain", "-1s"}, "-drain must not be negative"},
		{[]string{"-mix", "heavy"}, `-mix must be full or order, got "heavy"`},
		{[]string{"-mix", "order", "-login-ratio", "0.5"}, "-mix order sends no log ins"},
		{[]string{"-rate", "fast"}, `invalid value "fast" for flag -rate`},
		{[]string{"-rate", "10", "browse"}, `unexpected argument "browse"`},
		{[]string{"-target", "localhost:8080"}, "-target must be"},
		{[]string{"-target", "127.0.0.1:8080"}, "-target must be"},
		{[]string{"-target", ""}, "-target must be"},
		{[]string{"-target", "http://127.0.0.1:8080/gw?x=1"}, "-target must be"},
	}
	for _, c := range cases {
		cmd := exec.Command(os.Args[0], c.args...)
		cmd.Env = append(os.Environ(), "LOADGEN_TEST_MAIN=1")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("loadgen %v: %v, stderr %q; want exit status 2 and %q", c.args, err, stderr.String(), c.want)
		}
	}
}

func TestGoodFlagsParse(t *testing.T) {
	var out bytes.Buffer
	c, err := parseFlags([]string{"-rate", "250", "-duration", "30s", "-login-ratio", "0", "-subject", "e2e1.shanhai.payments.>"}, &out)
	if err != nil || out.Len() > 0 {
		t.Fatalf("parseFlags: %v, output %q", err, out.String())
	}
	if c.rate != 250 || c.duration != 30*time.Second || c.loginRatio != 0 || c.ordersSubject != "e2e1.shanhai.orders.>" {
		t.Fatalf("config = %+v", c)
	}
	// A base URL as a browser shows it, with its slash: the paths are
	// appended to it, and "//api/v1/..." is no route of the gateway's.
	if c, err := parseFlags([]string{"-target", "http://127.0.0.1:8080/"}, &out); err != nil || c.target != "http://127.0.0.1:8080" {
		t.Fatalf("-target http://127.0.0.1:8080/: target %q, %v; want http://127.0.0.1:8080", c.target, err)
	}
}

// The -json output parses and carries the same figures as the table: every
// row (ops, all, sagas, stages) to the table's 0.1 ms, each error class's
// count, each op's limited count, and the due/answered/dropped line.
func TestJSONHasTheTablesNumbers(t *testing.T) {
	rec := newRecorder()
	for i := range 1000 {
		rec.result("browse", time.Duration(i*i)*time.Microsecond, "")
	}
	for i := range 300 {
		class := ""
		switch i % 10 {
		case 1:
			class = "http 503"
		case 2:
			class = "connection closed"
		case 3, 4:
			class = limitedClass
		}
		rec.result("order", time.Duration(i)*time.Millisecond+123*time.Microsecond, class)
		rec.sample("order", class, "e.g. text")
	}
	rec.drop("order")
	rec.drop("poll") // an op whose only request was dropped still has a row
	for i := range 50 {
		rec.sagaDone("nats", time.Duration(i)*7*time.Millisecond, "")
	}
	rec.sent = 1302
	sum := rec.summary("http://gw", 100, 10, 4)
	sum.Stages = map[string]Stat{stagePayment: stat([]time.Duration{3 * time.Millisecond, 40 * time.Millisecond}, nil, 10)}

	var table, js bytes.Buffer
	if err := sum.write(&table, false); err != nil {
		t.Fatal(err)
	}
	if err := sum.write(&js, true); err != nil {
		t.Fatal(err)
	}
	var got Summary
	dec := json.NewDecoder(&js)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("-json output does not parse: %v", err)
	}

	rows := map[string][]string{}
	classes := map[string]string{} // "op class" → count
	due := ""
	row := regexp.MustCompile(`^(.*?)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s+(\d+)\s+(\d+)$`)
	class := regexp.MustCompile(`^\s+(\S+)\s+(.+?)\s+(\d+)  e\.g\. `)
	limitedLine := regexp.MustCompile(`^\s+(\S+)\s+(\d+)  e\.g\. `)
	limited := map[string]string{} // op → count
	sc := bufio.NewScanner(&table)
	for sc.Scan() {
		l := sc.Text()
		if m := row.FindStringSubmatch(l); m != nil {
			rows[strings.TrimSpace(m[1])] = m[2:]
		} else if m := limitedLine.FindStringSubmatch(l); m != nil {
			limited[m[1]] = m[2]
		} else if m := class.FindStringSubmatch(l); m != nil {
			classes[m[1]+" "+m[2]] = m[3]
		} else if strings.HasPrefix(l, "due ") {
			due = l
		}
	}
	want := map[string]Stat{"all": got.Total}
	for op, st := range got.Ops {
		want[op] = st
	}
	for src, st := range got.Saga {
		want["saga ("+src+")"] = st
	}
	for name, st := range got.Stages {
		want[name] = st
	}
	if len(rows) != len(want) || len(want) != 6 {
		t.Fatalf("table rows %v, JSON rows %v", rows, want)
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }
	for name, st := range want {
		w := []string{strconv.Itoa(st.Count), f(st.PerSec), f(st.P50Ms), f(st.P90Ms), f(st.P99Ms), f(st.P999Ms), f(st.MaxMs),
			strconv.Itoa(st.ErrCount), strconv.Itoa(st.Limited), strconv.Itoa(st.Dropped)}
		if strings.Join(rows[name], " ") != strings.Join(w, " ") {
			t.Errorf("%s: table %v, JSON %v", name, rows[name], w)
		}
	}
	n := 0
	for op, st := range got.Ops {
		for c, k := range st.Errors {
			n++
			if classes[op+" "+c] != strconv.Itoa(k) {
				t.Errorf("%s %s: table %q, JSON %d", op, c, classes[op+" "+c], k)
			}
		}
	}
	if n != len(classes) || n != 2 {
		t.Errorf("table error classes %v, JSON has %d", classes, n)
	}
	if len(limited) != 1 || limited["order"] != "60" || got.Ops["order"].Limited != 60 || got.Total.Limited != 60 || got.Ops["order"].ErrCount != 60 {
		t.Errorf("table limited %v, JSON order %+v, total limited %d: want 60 limited, apart from the 60 errors", limited, got.Ops["order"], got.Total.Limited)
	}
	if wantDue := fmt.Sprintf("due %d: answered %d, dropped %d,", got.Sent, got.Done, got.Dropped); !strings.HasPrefix(due, wantDue) || got.Dropped != 2 {
		t.Errorf("table says %q, JSON %q", due, wantDue)
	}
}

// Two polls of one order can be in flight at once (next requeues the order
// before its answer arrives); when both see it final, the poll saga must be
// counted once.
func TestFinalReportsAnOrderOnce(t *testing.T) {
	o := newOrders()
	o.add("o1", &user{}, time.Now())
	id1, _, _ := o.next()
	id2, _, _ := o.next()
	if id1 != "o1" || id2 != "o1" {
		t.Fatalf("next gave %q and %q, want o1 twice", id1, id2)
	}
	if _, ok := o.final(id1); !ok {
		t.Fatal("the first final of a pending order did not report it")
	}
	if _, ok := o.final(id2); ok {
		t.Error("final reported the same order final twice: the poll saga would count it twice")
	}
	if _, ok := o.final("unknown"); ok {
		t.Error("final reported an order it never saw")
	}
}

// On a loaded host the answer to POST /orders can take a second while the
// saga's events take tens of milliseconds, so the payment event may come
// before the run knows the order. It must still end that saga (timed 0, as
// it ended before its creation was answered), once, with its class: dropped
// as another platform's order, the saga stayed "unfinished" and was counted
// as a stall of the run's whole length.
func TestPaymentEventBeforeTheCreateAnswerEndsTheSaga(t *testing.T) {
	o := newOrders()
	t0 := time.Now()
	if _, ok := o.natsFinal("o1", t0, sagaFailed); ok {
		t.Fatal("natsFinal ended the saga of an order not yet created")
	}
	if _, ok := o.natsFinal("o1", t0.Add(time.Second), ""); ok {
		t.Fatal("natsFinal ended the saga of an order not yet created")
	}
	d, class, ended := o.add("o1", &user{}, t0.Add(300*time.Millisecond))
	if !ended || d != 0 || class != sagaFailed {
		t.Errorf("add after the event: ended %v in %v, class %q; want ended in 0, class %q (the first event)", ended, d, class, sagaFailed)
	}
	if _, ok := o.natsFinal("o1", t0.Add(2*time.Second), ""); ok {
		t.Error("a redelivered event ended the saga a second time")
	}
	if _, open := o.unfinished(); len(open) != 0 {
		t.Errorf("nats saga of o1 left unfinished although its payment event came")
	}

	// The usual order: created, then its event.
	if _, _, ended := o.add("o2", &user{}, t0); ended {
		t.Error("add ended a saga whose event has not come")
	}
	if d, ok := o.natsFinal("o2", t0.Add(80*time.Millisecond), ""); !ok || d != 80*time.Millisecond {
		t.Errorf("natsFinal after creation: %v, %v; want 80ms, true", d, ok)
	}
}
