package config

import (
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"time"
)

// Var describes one environment variable of a configuration, for the docs
// table and for error messages.
type Var struct {
	Name        string
	Type        string // human word: "string", "duration", "integer", "list of string", ...
	Default     string
	Required    bool
	Description string

	field      string            // Go field name, to map env's parse errors back to the variable
	typ        reflect.Type      // the field's type, for the same
	tag        reflect.StructTag // the field's tag and the envPrefix before its name:
	prefix     string            // enough to parse this one variable again (byField)
	hasDefault bool              // an `envDefault` tag is present, even if it is ""
	notEmpty   bool              // the `notEmpty` option: "" (or only spaces) is refused
	sep        string            // the list separator of a slice field ("" for others)
}

// Table lists the variables of each configuration struct (pointer or value),
// in declaration order, nested structs flattened with their envPrefix.
// Variables that appear in several configs (HTTP_ADDR, LOG_LEVEL, ...) are
// listed once per config, because their defaults differ per binary.
func Table(cfgs ...any) []Var {
	var out []Var
	for _, c := range cfgs {
		vs, err := fields(c)
		if err != nil {
			panic(fmt.Sprintf("config.Table: %v", err))
		}
		out = append(out, vs...)
	}
	return out
}

// fields walks the struct type the way caarlos0/env does: a field with an
// `env` tag is a variable; an untagged struct field is descended into with
// its `envPrefix`.
func fields(cfg any) ([]Var, error) {
	t := reflect.TypeOf(cfg)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil, fmt.Errorf("config: want a pointer to a struct, got %T", cfg)
	}
	var out []Var
	walk(t, "", &out)
	return out, nil
}

func walk(t reflect.Type, prefix string, out *[]Var) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag, hasTag := f.Tag.Lookup("env")
		if !hasTag || tag == "" {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				walk(ft, prefix+f.Tag.Get("envPrefix"), out)
			}
			continue
		}
		if tag == "-" {
			continue
		}
		parts := strings.Split(tag, ",")
		v := Var{
			Name:        prefix + parts[0],
			Type:        typeName(f.Type),
			Description: f.Tag.Get("desc"),
			field:       f.Name,
			typ:         f.Type,
			tag:         f.Tag,
			prefix:      prefix,
		}
		v.Default, v.hasDefault = f.Tag.Lookup("envDefault")
		if f.Type.Kind() == reflect.Slice {
			v.sep = f.Tag.Get("envSeparator")
			if v.sep == "" {
				v.sep = "," // caarlos0/env's default
			}
		}
		for _, o := range parts[1:] {
			if o == "required" || o == "notEmpty" {
				v.Required = true
			}
			if o == "notEmpty" {
				v.notEmpty = true
			}
		}
		*out = append(*out, v)
	}
}

var (
	durationType = reflect.TypeOf(time.Duration(0))
	levelType    = reflect.TypeOf(slog.Level(0))
)

// TypeNamer is implemented by a field type with a form of its own (one its
// UnmarshalText parses, say): TypeName is what the table's type column and
// the error messages call it instead of the Go type's name, e.g.
// "rate (count/period[:burst], e.g. 100/1s:200)". It is called on the
// type's zero value, so it must not depend on the value.
type TypeNamer interface {
	TypeName() string
}

// typeName is the word an operator understands, not the Go spelling.
func typeName(t reflect.Type) string {
	// reflect.New covers a TypeName on the value and on the pointer.
	if n, ok := reflect.New(t).Interface().(TypeNamer); ok {
		return n.TypeName()
	}
	switch t {
	case durationType:
		return "duration (e.g. 500ms, 10s)"
	case levelType:
		return "log level (debug, info, warn, error)"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return typeName(t.Elem())
	case reflect.Bool:
		return "boolean (true/false)"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.String:
		return "string"
	case reflect.Slice:
		return "comma-separated list of " + typeName(t.Elem())
	case reflect.Map:
		return "comma-separated key:value pairs"
	}
	if t.PkgPath() == "net/url" && t.Name() == "URL" {
		return "URL"
	}
	return t.String()
}
