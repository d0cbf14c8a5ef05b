package config

import (
	"os"
	"testing"

	pkgconfig "github.com/shanhai-dev/shanhai/pkg/config"
)

// TestReadmeConfigTable keeps the README's variable table in step with the
// struct; UPDATE_DOCS=1 rewrites it.
func TestReadmeConfigTable(t *testing.T) {
	err := pkgconfig.SyncDoc("../../README.md", "bridge", os.Getenv("UPDATE_DOCS") != "", pkgconfig.Section{Title: "Configuration (environment)", Config: &Config{}})
	if err != nil {
		t.Fatal(err)
	}
}
