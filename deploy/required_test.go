package deploy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// repoRoot is where the binaries' sources live, relative to this package.
const repoRoot = ".."

// configVars reads a binary's config package and returns every env variable its struct tags declare, and which of
// them are marked required. Reading the source (not a hand-kept list) is what lets these tests catch drift.
func configVars(t *testing.T, b Binary) (all map[string]string, required []string) {
	t.Helper()
	fset := token.NewFileSet()
	dir := filepath.Join(repoRoot, b.ConfigDir)
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	all = map[string]string{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatalf("%s: parse %s: %v", b.Name, name, err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			f, ok := n.(*ast.Field)
			if !ok || f.Tag == nil {
				return true
			}
			raw, err := strconv.Unquote(f.Tag.Value)
			if err != nil {
				return true
			}
			tag := reflect.StructTag(raw)
			env, ok := tag.Lookup("env")
			if !ok {
				return true
			}
			parts := strings.Split(env, ",")
			if parts[0] == "" {
				return true
			}
			all[parts[0]] = tag.Get("envDefault")
			for _, opt := range parts[1:] {
				if opt == "required" {
					required = append(required, parts[0])
				}
			}
			return true
		})
	}
	if len(all) == 0 {
		t.Fatalf("%s: no env-tagged fields found in %s", b.Name, dir)
	}
	sort.Strings(required)
	return all, required
}

// defaultPort is the port of a binary's HTTP_ADDR default, which every manifest must agree with.
func defaultPort(t *testing.T, b Binary) int {
	t.Helper()
	all, _ := configVars(t, b)
	addr, ok := all["HTTP_ADDR"]
	if !ok {
		t.Fatalf("%s: config has no HTTP_ADDR", b.Name)
	}
	i := strings.LastIndex(addr, ":")
	p, err := strconv.Atoi(addr[i+1:])
	if err != nil {
		t.Fatalf("%s: HTTP_ADDR default %q has no port", b.Name, addr)
	}
	return p
}

func TestBinariesMatchTheirConfiguration(t *testing.T) {
	for _, b := range Binaries {
		if got := defaultPort(t, b); got != b.Port {
			t.Errorf("%s: HTTP_ADDR defaults to port %d, the platform table says %d", b.Name, got, b.Port)
		}
	}
}

// missingRequired lists the requirements of b that env does not satisfy.
func missingRequired(t *testing.T, b Binary, has func(string) bool) []string {
	_, required := configVars(t, b)
	var missing []string
	for _, v := range required {
		if !has(v) {
			missing = append(missing, v)
		}
	}
	for _, group := range b.AnyOf {
		ok := false
		for _, v := range group {
			ok = ok || has(v)
		}
		if !ok {
			missing = append(missing, "one of "+strings.Join(group, "|"))
		}
	}
	return missing
}
