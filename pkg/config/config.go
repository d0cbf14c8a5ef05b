// Package config loads a binary's typed configuration from environment
// variables, once, at start.
//
// A configuration is a plain struct whose fields carry caarlos0/env tags plus
// a `desc` tag for people:
//
//	type Config struct {
//		Addr    string        `env:"HTTP_ADDR" envDefault:":8082" desc:"listen address"`
//		DB      string        `env:"DATABASE_URL,required" desc:"postgres://... or sqlite://path"`
//		Timeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"10s" desc:"drain deadline"`
//	}
//
// A variable that is unset takes its `envDefault`; one set to the empty
// string is empty (the field's zero value), so ADMIN_ADDR= turns the admin
// listener off instead of quietly restoring its default. (caarlos0/env on its
// own would substitute the default for both.)
//
// Load reports every bad variable at once (not just the first), so an operator
// fixes a deployment in one round instead of one restart per typo. If the
// struct has a `Validate() error` method it runs after parsing (even when
// some variables did not parse; its complaints about those are dropped), and
// its complaints join the same list; return [Invalid] errors from it to name
// the variable. A `notEmpty` variable holding only whitespace counts as empty,
// and list items are trimmed, empty ones dropped ("a, b," is a and b).
//
// A variable the struct does not read is ignored, even one that looks like a
// misspelt neighbour (GATEWAY_RATE_LIMT beside GATEWAY_…): Kubernetes gives
// every pod a GATEWAY_PORT, USER_SERVICE_HOST, ... for each Service of its
// namespace (deploy's TestManifestsGiveValuesTheBinariesAccept), so refusing
// unknown names under a binary's prefix would stop it there, and a warning
// would fire on every pod. The generated table is where a name is checked.
//
// A slog.Level field (every binary's LOG_LEVEL) takes debug, info, warn or
// error and nothing else, not even the "WARN" or "info+2" slog would, nor
// "": one spelling for every binary, refused with the other bad variables.
//
// A field's type is named for people ("duration (e.g. 500ms, 10s)",
// "integer") in the table and in the messages; a type with a form of its own
// names it with a TypeName method ([TypeNamer]), or it is shown by its Go name.
//
// # The documentation table
//
// docs/configuration.md holds one generated table per binary, between
// <!-- config:NAME --> and <!-- /config:NAME --> markers. Each binary owns its
// block and keeps it current from its own test, so no generator has to import
// every module:
//
//	var update = flag.Bool("update", false, "rewrite docs/configuration.md")
//
//	func TestConfigDoc(t *testing.T) {
//		err := config.SyncDoc("../../docs/configuration.md", "order", *update,
//			config.Section{Title: "order service (cmd/order)", Config: Config{}})
//		if err != nil {
//			t.Fatal(err)
//		}
//	}
//
// `go test ./cmd/order -run TestConfigDoc -update` writes the block (adding
// it at the end of the file the first time); without -update the test fails
// when the struct and the committed table disagree, so make test catches a
// variable added without docs.
package config

import (
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/caarlos0/env/v11"
)

// Validator is implemented by configuration structs with rules beyond "this
// parses as that type" (ranges, one-of, cross-field rules).
type Validator interface {
	Validate() error
}

// VarError is one bad variable and what is expected of it.
type VarError struct {
	Var      string // environment variable name
	Problem  string // what is wrong, e.g. "not set" or `"abc" is not a duration`
	Expected string // what a good value looks like (from the type and `desc`)
}

func (e *VarError) Error() string {
	s := e.Var + ": " + e.Problem
	if e.Expected != "" {
		s += " (expected " + e.Expected + ")"
	}
	return s
}

// Invalid builds the error a Validate method returns for one variable, e.g.
// config.Invalid("SHUTDOWN_TIMEOUT", "must be positive"). Join several with
// errors.Join; Load lists each.
func Invalid(variable, problem string) error {
	return &VarError{Var: variable, Problem: problem}
}

// NotEmpty is the error of a variable set to an empty or blank value where
// empty means nothing (an address or a key that has a default), nil for any
// other value; Validate methods append it for each such variable (errors.Join
// drops the nils). Unset, the variable takes its default; set empty it is a
// mistake, not a way to turn something off, and it failed far from its
// variable: NATS_URL= made nats.go dial its own default, not the platform's,
// and HTTP_ADDR= listened on a port the kernel picked (http.Server's "" is
// :80), where no probe looks. The `notEmpty` tag refuses "" too, but marks the
// variable required in the documentation tables, which these are not.
func NotEmpty(variable, value string) error {
	if strings.TrimSpace(value) != "" {
		return nil
	}
	return Invalid(variable, "must not be empty (unset it for the default)")
}

// Error is what Load returns: every bad variable, sorted by name.
type Error struct {
	Vars []*VarError
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invalid configuration (%d problem", len(e.Vars))
	if len(e.Vars) != 1 {
		b.WriteString("s")
	}
	b.WriteString("):")
	for _, v := range e.Vars {
		b.WriteString("\n  ")
		b.WriteString(v.Error())
	}
	return b.String()
}

// Load fills cfg (a pointer to a struct) from the environment and validates
// it. The error, if any, is an *Error listing every bad variable.
func Load(cfg any) error {
	return load(cfg, nil)
}

// LoadFrom is Load from the given environment instead of the process's: a
// program that hosts several binaries' wiring in one process (cmd/shanhai)
// gives each its own variables without touching os.Environ, which all of
// them share. A nil map is an empty environment.
func LoadFrom(cfg any, environ map[string]string) error {
	if environ == nil {
		environ = map[string]string{}
	}
	return load(cfg, environ)
}

// load takes an explicit environment for tests; nil means the process's.
func load(cfg any, environ map[string]string) error {
	vars, err := fields(cfg)
	if err != nil {
		return err
	}
	if environ == nil {
		environ = processEnv()
	}
	withDefaults, err := applyDefaults(environ, vars)
	if err != nil {
		return err
	}
	opts := env.Options{Environment: withDefaults, DefaultValueTagName: noDefaultTag, FuncMap: finiteFloats}
	lookup := func(key string) (string, bool) {
		v, ok := environ[key]
		return v, ok
	}

	bad := badLevels(vars, withDefaults)
	failed := map[string]bool{}
	for _, ve := range bad {
		failed[ve.Var] = true // env's own complaint about it, if any, would say it twice
	}
	if err := env.ParseWithOptions(cfg, opts); err != nil {
		var agg env.AggregateError
		if !errors.As(err, &agg) {
			return fmt.Errorf("load configuration: %w", err)
		}
		for _, e := range agg.Errors {
			ve, ok := translate(e, vars, lookup, failed, opts)
			if !ok {
				return fmt.Errorf("load configuration: %w", e)
			}
			// Two fields reading one variable fail together: it is one
			// thing for the operator to fix.
			if !failed[ve.Var] {
				failed[ve.Var] = true
				bad = append(bad, ve)
			}
		}
	}
	// Rules run even when some values did not parse, so one message lists
	// a typo in one variable and a negative duration in another. What they
	// say about a variable that failed to parse (its field is left at zero)
	// is a follow-on and dropped, and so are complaints naming no variable,
	// which may be about that zero too.
	parsed := len(bad) == 0
	said := map[VarError]bool{} // a section validated in two places says the same thing twice
	for _, err := range validate(reflect.ValueOf(cfg)) {
		for _, ve := range validationErrors(err, vars) {
			if !failed[ve.Var] && (parsed || ve.Var != unnamed) && !said[*ve] {
				said[*ve] = true
				bad = append(bad, ve)
			}
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.SliceStable(bad, func(i, j int) bool { return bad[i].Var < bad[j].Var })
	return &Error{Vars: bad}
}

// finiteFloats parses float fields as strconv does but refuses NaN and the
// infinities, which it accepts: a NaN ratio passes every range check written
// as comparisons (NaN < 0 and NaN > 1 are both false) and then breaks the
// arithmetic it feeds.
var finiteFloats = map[reflect.Type]env.ParserFunc{
	reflect.TypeFor[float64](): func(v string) (any, error) { return parseFinite(v, 64) },
	reflect.TypeFor[float32](): func(v string) (any, error) {
		f, err := parseFinite(v, 32)
		return float32(f), err
	},
}

func parseFinite(v string, bits int) (float64, error) {
	f, err := strconv.ParseFloat(v, bits)
	if err == nil && (math.IsNaN(f) || math.IsInf(f, 0)) {
		err = fmt.Errorf("%q is not a finite number", v)
	}
	return f, err
}

// noDefaultTag is a struct tag no field carries, so caarlos0/env applies no
// defaults itself: it substitutes `envDefault` for a variable that is set but
// empty, and has no option to stop that. The conventions promise the opposite
// ("ADMIN_ADDR empty disables", "ETCD_ENDPOINTS empty means static
// discovery"), so applyDefaults supplies defaults for unset variables only.
const noDefaultTag = "shanhai-config-applies-envDefault"

// applyDefaults returns environ plus the `envDefault` of every variable that
// is not set at all. A variable set to "" stays "", which env leaves as the
// field's zero value: empty string, empty list, 0, false. Validate methods
// reject the zeros that make no sense for their binary.
func applyDefaults(environ map[string]string, vars []Var) (map[string]string, error) {
	out := make(map[string]string, len(environ)+len(vars))
	for k, v := range environ {
		out[k] = v
	}
	applied := map[string]string{}
	for _, v := range vars {
		if !v.hasDefault {
			continue
		}
		if _, set := environ[v.Name]; set {
			continue
		}
		// One map entry serves every field with this name, so two fields
		// with different defaults for one variable cannot both be honoured.
		if prev, dup := applied[v.Name]; dup && prev != v.Default {
			return nil, fmt.Errorf("load configuration: %s has two defaults, %q and %q", v.Name, prev, v.Default)
		}
		applied[v.Name] = v.Default
		out[v.Name] = v.Default
	}
	// A notEmpty variable holding only spaces or tabs is as empty as "" (a
	// stray space in a manifest), so env reports it as such instead of the
	// binary failing later on a blank DATABASE_URL.
	for _, v := range vars {
		if val, set := out[v.Name]; v.notEmpty && set && strings.TrimSpace(val) == "" {
			out[v.Name] = ""
		}
	}
	// A list is written by people: "a, b" or a trailing separator means
	// the items a and b, not " b" (which an etcd or Kafka client fails to
	// dial, far from the variable that caused it) or an empty last item.
	for _, v := range vars {
		if val, set := out[v.Name]; v.sep != "" && set {
			out[v.Name] = cleanList(val, v.sep)
		}
	}
	return out, nil
}

// cleanList trims the spaces around each item of the list and drops empty
// items; a list of nothing but separators and spaces becomes "".
func cleanList(list, sep string) string {
	items := strings.Split(list, sep)
	kept := items[:0]
	for _, it := range items {
		if it = strings.TrimSpace(it); it != "" {
			kept = append(kept, it)
		}
	}
	return strings.Join(kept, sep)
}

func processEnv() map[string]string {
	m := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// validate calls Validate on the struct and on every nested struct that has
// one (a shared DB or Kafka section validates itself wherever it is embedded),
// outermost first.
func validate(v reflect.Value) []error {
	var errs []error
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil
		}
		if val, ok := v.Interface().(Validator); ok {
			if err := val.Validate(); err != nil {
				errs = append(errs, err)
			}
		}
		v = v.Elem()
	} else if v.CanAddr() {
		return validate(v.Addr())
	}
	if v.Kind() != reflect.Struct {
		return errs
	}
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		if !v.Type().Field(i).IsExported() {
			continue
		}
		switch {
		case f.Kind() == reflect.Struct:
			errs = append(errs, validate(f.Addr())...)
		case f.Kind() == reflect.Pointer && f.Type().Elem().Kind() == reflect.Struct:
			errs = append(errs, validate(f)...)
		}
	}
	return errs
}

// MustLoad is Load for main: on failure it prints the one message listing
// every bad variable to stderr and exits with status 2 (usage error), before
// anything else starts.
func MustLoad(cfg any) {
	if err := Load(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", progName(), err)
		os.Exit(2)
	}
}

func progName() string {
	if len(os.Args) == 0 {
		return "config"
	}
	name := os.Args[0]
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	return name
}

// translate turns one of env's errors into a VarError naming the variable;
// reported holds the variables already named for earlier errors.
func translate(err error, vars []Var, lookup func(string) (string, bool), reported map[string]bool, opts env.Options) (*VarError, bool) {
	var (
		notSet VarIsNotSet
		empty  env.EmptyVarError
		parse  env.ParseError
	)
	switch {
	case errors.As(err, &notSet):
		return &VarError{Var: notSet.Key, Problem: "required but not set", Expected: expected(byName(vars, notSet.Key))}, true
	case errors.As(err, &empty):
		return &VarError{Var: empty.Key, Problem: "must not be empty", Expected: expected(byName(vars, empty.Key))}, true
	case errors.As(err, &parse):
		v := byField(vars, parse, reported, opts)
		name := parse.Name
		val := ""
		if v != nil {
			name = v.Name
			var set bool
			if val, set = lookup(v.Name); !set {
				val = opts.Environment[v.Name] // its envDefault is what failed
			}
		}
		return &VarError{Var: name, Problem: fmt.Sprintf("%q is invalid", val), Expected: expected(v)}, true
	}
	return nil, false
}

// VarIsNotSet aliases env's error so callers of this package need not import env.
type VarIsNotSet = env.VarIsNotSetError

// unnamed stands for the variable of a Validate complaint that is not an
// [Invalid] error.
const unnamed = "(config)"

func validationErrors(err error, vars []Var) []*VarError {
	var out []*VarError
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		var ve *VarError
		if errors.As(e, &ve) {
			c := *ve
			if c.Expected == "" {
				c.Expected = expected(byName(vars, c.Var))
			}
			out = append(out, &c)
			return
		}
		out = append(out, &VarError{Var: unnamed, Problem: e.Error()})
	}
	walk(err)
	return out
}

func byName(vars []Var, name string) *Var {
	for i := range vars {
		if vars[i].Name == name {
			return &vars[i]
		}
	}
	return nil
}

// byField finds the variable behind a parse error, which names only the Go
// field (and its type). Fields of nested structs may share both (a Port in two
// sections): the variable is the one of them whose value does not parse on
// its own and was not named for an earlier error, so a good A_PORT is not
// blamed for a bad B_PORT.
func byField(vars []Var, parse env.ParseError, reported map[string]bool, opts env.Options) *Var {
	var first *Var
	for i := range vars {
		v := &vars[i]
		if v.field != parse.Name {
			continue
		}
		if first == nil {
			first = v
		}
		if !reported[v.Name] && !parsesAlone(v, opts) {
			return v
		}
	}
	return first
}

// parsesAlone reports whether v's value (opts.Environment, defaults applied)
// parses as v's field does, by having env parse a struct of that one field
// with its own tag and prefix.
func parsesAlone(v *Var, opts env.Options) bool {
	one := reflect.New(reflect.StructOf([]reflect.StructField{{Name: "F", Type: v.typ, Tag: v.tag}}))
	opts.Prefix = v.prefix
	var parse env.ParseError
	return !errors.As(env.ParseWithOptions(one.Interface(), opts), &parse)
}

func expected(v *Var) string {
	if v == nil {
		return ""
	}
	s := v.Type
	if v.Description != "" {
		s += ": " + v.Description
	}
	return s
}
