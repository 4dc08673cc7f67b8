package app_test

import (
	"os"
	"strings"
	"testing"

	"github.com/vmrestore/vmrestore/internal/app"
)

// docs/configuration.md must list every setting the binaries read.
func TestReadmeListsEverySetting(t *testing.T) {
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range app.Settings {
		if !strings.Contains(string(b), "| `"+s.Env()+"` |") {
			t.Errorf("docs/configuration.md does not list %s", s.Env())
		}
	}
}
