package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestMeasureSaysWhatThisProcessHolds: the -measure line and the banner name what each figure counts. Under -native
// nothing is embedded (the servers are scripts/deps.sh's, other processes not counted), yet -native -processes printed
// "shanhai + embedded servers N MB" for a process that held only the supervisor, and the one-process line hedged with
// "the embedded servers, if any".
func TestMeasureSaysWhatThisProcessHolds(t *testing.T) {
	child := exec.Command("sleep", "60")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })

	for _, c := range []struct {
		name      string
		native    bool
		processes bool
		want      []string
		not       []string
	}{
		{name: "embedded", want: []string{"one process", "the five parts and the embedded servers"}, not: []string{"if any"}},
		{name: "native", native: true, want: []string{"one process (the five parts)", "not counting the scripts/deps.sh servers"},
			not: []string{"embedded", "if any"}},
		{name: "embedded -processes", processes: true, want: []string{"shanhai with the embedded servers", "order "}},
		{name: "native -processes", native: true, processes: true,
			want: []string{"it only starts and watches the parts", "; user ", "order ", "not counting the scripts/deps.sh servers"},
			not:  []string{"embedded"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := &Platform{Parts: map[string]*Part{}}
			if !c.native {
				p.Infra = &Infra{}
			}
			for _, name := range Names {
				part := &Part{Name: name}
				if c.processes {
					part.Path, part.cmd = "/bin/sleep", child // every part the same child: only the wording is checked
				}
				p.Parts[name] = part
			}
			m, err := p.Measure()
			if err != nil {
				t.Fatal(err)
			}
			s := m.String()
			t.Log(s)
			for _, w := range c.want {
				if !strings.Contains(s, w) {
					t.Errorf("%q does not say %q", s, w)
				}
			}
			for _, n := range c.not {
				if strings.Contains(s, n) {
					t.Errorf("%q says %q", s, n)
				}
			}
		})
	}
}
