package app_test

import (
	"os"
	"strings"
	"testing"

	"github.com/vmrestore/vmrestore/internal/app"
)

// The README's configuration table must list every setting the binaries read.
func TestReadmeListsEverySetting(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range app.Settings {
		if !strings.Contains(string(b), "| `"+s.Env()+"` |") {
			t.Errorf("README.md's configuration table does not list %s", s.Env())
		}
	}
}
