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
// them are marked required. Reading the source (not a hand-kept list) is what lets these tests catch drift. A field
// whose type comes from another package of this repository (the user service's auth.KeyConfig) is read there too.
func configVars(t *testing.T, b Binary) (all map[string]string, required []string) {
	t.Helper()
	all = map[string]string{}
	readConfigDir(t, b.Name, filepath.Join(repoRoot, b.ConfigDir), all, &required, map[string]bool{})
	if len(all) == 0 {
		t.Fatalf("%s: no env-tagged fields found in %s", b.Name, b.ConfigDir)
	}
	sort.Strings(required)
	return all, required
}

// modulePrefix is the import path prefix of this repository's packages.
const modulePrefix = "github.com/shanhai-dev/shanhai/"

func readConfigDir(t *testing.T, name, dir string, all map[string]string, required *[]string, seen map[string]bool) {
	t.Helper()
	if seen[dir] {
		return
	}
	seen[dir] = true
	fset := token.NewFileSet()
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatalf("%s: parse %s: %v", name, path, err)
		}
		imports := map[string]string{}
		for _, imp := range file.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			local := p[strings.LastIndex(p, "/")+1:]
			if imp.Name != nil {
				local = imp.Name.Name
			}
			imports[local] = p
		}
		ast.Inspect(file, func(n ast.Node) bool {
			f, ok := n.(*ast.Field)
			if !ok {
				return true
			}
			if f.Tag == nil {
				// A struct from another package of the repository: its variables are this binary's too.
				typ := f.Type
				if star, ok := typ.(*ast.StarExpr); ok {
					typ = star.X
				}
				if sel, ok := typ.(*ast.SelectorExpr); ok {
					if pkg, ok := sel.X.(*ast.Ident); ok {
						if rest, ok := strings.CutPrefix(imports[pkg.Name], modulePrefix); ok {
							readConfigDir(t, name, filepath.Join(repoRoot, rest), all, required, seen)
						}
					}
				}
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
					*required = append(*required, parts[0])
				}
			}
			return true
		})
	}
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
