package client

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportsOnlyWireTypes keeps the client on the wire: of vmrestore's packages it imports
// only the native API's types (apiv1) and ZStack's (zstack).
func TestImportsOnlyWireTypes(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	allowed := map[string]bool{
		"github.com/vmrestore/vmrestore/internal/apiv1":  true,
		"github.com/vmrestore/vmrestore/internal/zstack": true,
	}
	seen := 0
	for _, imp := range strings.Fields(string(out)) {
		if !strings.HasPrefix(imp, "github.com/vmrestore/vmrestore/") {
			continue
		}
		seen++
		if !allowed[imp] {
			t.Errorf("internal/client imports %s; it may import only internal/apiv1 and internal/zstack", imp)
		}
	}
	if seen == 0 {
		t.Fatalf("go list found no vmrestore import in internal/client:\n%s", out)
	}
}
