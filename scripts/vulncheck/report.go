package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
)

// finding is one vulnerability the code reaches: govulncheck's symbol-level findings for one OSV id, of which the
// first trace is kept as the example.
type finding struct {
	ID, Summary     string
	Module, Version string
	Fixed           string // empty: no fixed version
	Trace           string
}

// The parts of govulncheck's JSON stream (protocol v1) read here: a sequence of objects, each holding one message.
type message struct {
	OSV *struct {
		ID      string `json:"id"`
		Summary string `json:"summary"`
	} `json:"osv"`
	Finding *struct {
		OSV   string  `json:"osv"`
		Fixed string  `json:"fixed_version"`
		Trace []frame `json:"trace"`
	} `json:"finding"`
}

// frame is one step of a finding's trace: the first is the vulnerable symbol, the last the caller in this code.
type frame struct {
	Module   string `json:"module"`
	Version  string `json:"version"`
	Package  string `json:"package"`
	Function string `json:"function"`
	Receiver string `json:"receiver"`
	Position *struct {
		Filename string `json:"filename"`
		Line     int    `json:"line"`
	} `json:"position"`
}

func (f frame) name() string {
	p := f.Package[strings.LastIndexByte(f.Package, '/')+1:]
	if f.Receiver != "" {
		return p + "." + strings.TrimPrefix(f.Receiver, "*") + "." + f.Function
	}
	return p + "." + f.Function
}

// parse reads govulncheck's JSON stream and returns the findings the code reaches, by OSV id. Module- and
// package-level findings (a vulnerable module required, or a vulnerable package imported, with no call of a
// vulnerable symbol) are not failures, as they are not for govulncheck itself.
func parse(r io.Reader) (map[string]*finding, error) {
	found := map[string]*finding{}
	summary := map[string]string{}
	dec := json.NewDecoder(r)
	for {
		var m message
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, err
		}
		if m.OSV != nil {
			summary[m.OSV.ID] = m.OSV.Summary
		}
		f := m.Finding
		if f == nil || len(f.Trace) == 0 || f.Trace[0].Function == "" || found[f.OSV] != nil {
			continue
		}
		vuln, caller := f.Trace[0], f.Trace[len(f.Trace)-1]
		trace := caller.name() + " reaches " + vuln.name()
		if caller.Position != nil {
			// Filenames are relative to the caller's module; with its path they say which module too.
			trace = fmt.Sprintf("%s:%d: %s", path.Join(caller.Module, caller.Position.Filename), caller.Position.Line, trace)
		}
		found[f.OSV] = &finding{ID: f.OSV, Module: vuln.Module, Version: vuln.Version, Fixed: f.Fixed, Trace: trace}
	}
	for id, f := range found {
		f.Summary = summary[id]
	}
	return found, nil
}

// accepted is one line of allow.txt: a vulnerability id, the module it is accepted in, and why.
type accepted struct {
	ID, Module, Reason string
}

// parseAllow reads allow.txt: "ID module reason…" per line; blank lines and lines starting with # are comments.
// A line without a reason is an error: an acceptance nobody explained is not a review.
func parseAllow(text string) ([]accepted, error) {
	var list []accepted
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 {
			return nil, fmt.Errorf("line %d: want \"ID module reason\", got %q", n+1, line)
		}
		list = append(list, accepted{ID: f[0], Module: f[1], Reason: strings.Join(f[2:], " ")})
	}
	return list, nil
}

// report writes one line per finding (accepted or not) and per stale acceptance, and returns how many of them
// fail the check: findings not accepted, and acceptances of something no longer found (they would otherwise
// outlive their reason and hide the next finding with the same id).
func report(w io.Writer, found map[string]*finding, allow []accepted) (failed int) {
	ids := make([]string, 0, len(found))
	for id := range found {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		f := found[id]
		fixed := "no fixed version"
		if f.Fixed != "" {
			fixed = "fixed in " + f.Fixed
		}
		i := slices.IndexFunc(allow, func(a accepted) bool { return a.ID == id && a.Module == f.Module })
		if i >= 0 {
			fmt.Fprintf(w, "accepted %s in %s@%s (%s): %s\n", id, f.Module, f.Version, fixed, allow[i].Reason)
			continue
		}
		failed++
		fmt.Fprintf(w, "FOUND    %s in %s@%s (%s): %s\n         %s\n", id, f.Module, f.Version, fixed, f.Summary, f.Trace)
	}
	for _, a := range allow {
		if f := found[a.ID]; f == nil || f.Module != a.Module {
			failed++
			fmt.Fprintf(w, "stale    %s in %s is accepted in allow.txt but no longer found: remove the line\n", a.ID, a.Module)
		}
	}
	if len(found) == 0 {
		fmt.Fprintln(w, "no vulnerability reached by the code")
	}
	return failed
}
