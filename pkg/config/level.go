package config

import (
	"fmt"
	"slices"
)

// levelNames are the values a log level variable (a slog.Level field,
// LOG_LEVEL in every binary) takes.
var levelNames = []string{"debug", "info", "warn", "error"}

// badLevels refuses the log level variables of vars that environ (with
// defaults applied) sets to anything but one of levelNames. slog.Level's own
// UnmarshalText, which env calls, also takes "DEBUG" and "info+2", and env
// leaves a variable set to "" at the zero value, info: forms no table
// documents and cmd/shanhai's -log-level refuses, so they are refused here
// and one spelling works for every binary. A mistyped level is refused
// rather than run at info, which would say nothing.
func badLevels(vars []Var, environ map[string]string) []*VarError {
	var bad []*VarError
	for i := range vars {
		v := &vars[i]
		if v.typ != levelType {
			continue
		}
		if val, set := environ[v.Name]; set && !slices.Contains(levelNames, val) {
			bad = append(bad, &VarError{Var: v.Name, Problem: fmt.Sprintf("%q: must be debug, info, warn or error", val), Expected: expected(v)})
		}
	}
	return bad
}
