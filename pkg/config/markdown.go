package config

import (
	"bytes"
	"fmt"
	"os"
	"strings"
)

// Section is one binary's configuration in the docs: a heading and the
// struct (or pointer to it) that binary loads.
type Section struct {
	Title  string
	Config any
}

// Markdown renders each section as a heading plus a table of its variables
// (name, default, required, type and description). The output is stable, so a
// test can compare it with the committed docs.
func Markdown(sections ...Section) string {
	var b strings.Builder
	for i, s := range sections {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "### %s\n\n", s.Title)
		b.WriteString("| variable | default | required | type | description |\n")
		b.WriteString("| --- | --- | --- | --- | --- |\n")
		for _, v := range Table(s.Config) {
			def := "-"
			if v.Default != "" {
				def = "`" + v.Default + "`"
			}
			req := ""
			if v.Required {
				req = "yes"
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", v.Name, cell(def), req, cell(v.Type), cell(v.Description))
		}
	}
	return b.String()
}

// cell keeps a value from breaking the table row.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

// Block markers delimit one generated section inside a hand-written
// Markdown file: <!-- config:NAME --> ... <!-- /config:NAME -->.
func markers(name string) (begin, end string) {
	return "<!-- config:" + name + " -->", "<!-- /config:" + name + " -->"
}

// SyncDoc keeps the block named name in the Markdown file at path equal to
// Markdown(sections...). With update false it only compares and returns an
// error saying how to regenerate; with update true it rewrites the block (and
// appends it to the file if the markers are missing).
//
// Each binary owns its block, so no generator has to import every binary:
// the binary's own test calls
//
//	config.SyncDoc("../../docs/configuration.md", "order", *update,
//		config.Section{Title: "order", Config: Config{}})
//
// and `go test ./cmd/order -run TestConfigDoc -update` regenerates it.
func SyncDoc(path, name string, update bool, sections ...Section) error {
	begin, end := markers(name)
	want := begin + "\n" + Markdown(sections...) + end
	old, err := os.ReadFile(path)
	if err != nil && !(update && os.IsNotExist(err)) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	i := bytes.Index(old, []byte(begin))
	j := bytes.Index(old, []byte(end))
	var cur []byte
	if i >= 0 && j > i {
		cur = old[i : j+len(end)]
	}
	if string(cur) == want {
		return nil
	}
	if !update {
		return fmt.Errorf("%s: the %q configuration table is out of date; rerun this test with -update to regenerate it", path, name)
	}
	var next []byte
	if cur == nil {
		next = append(append(bytes.TrimRight(old, "\n"), "\n\n"...), want...)
		next = append(bytes.TrimLeft(next, "\n"), '\n')
	} else {
		next = append(append(append([]byte{}, old[:i]...), want...), old[j+len(end):]...)
	}
	if err := os.WriteFile(path, next, 0o644); err != nil {
		return fmt.Errorf("update %s: %w", path, err)
	}
	return nil
}
