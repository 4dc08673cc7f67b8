package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// A misspelt command is named, with the one meant, even when flags of the command meant
// follow it ("plan aply -f x" fails on -f, which plan does not have).
func TestMisspeltCommandsAreSuggested(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"plan", "aply", "-f", "x"}, `unknown command "aply" for "restorectl plan" (did you mean "apply"?)`},
		{[]string{"plan", "aply"}, `unknown command "aply" for "restorectl plan" (did you mean "apply"?)`},
		{[]string{"pln", "list"}, `unknown command "pln" for "restorectl" (did you mean "plan"?)`},
		{[]string{"vm", "lst", "--q", "name=x"}, `unknown command "lst" for "restorectl vm" (did you mean "list"?)`},
		{[]string{"plan", "apply", "-x"}, `unknown shorthand flag: 'x' in -x`},
	} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), c.args, func(string) string { return "" }, strings.NewReader(""), &out, &errOut)
		if code != exitUsage || !strings.Contains(errOut.String(), "error: "+c.want) {
			t.Errorf("restorectl %s: exit %d, stderr %q; want exit %d and %q", strings.Join(c.args, " "), code, errOut.String(), exitUsage, c.want)
		}
	}
}
