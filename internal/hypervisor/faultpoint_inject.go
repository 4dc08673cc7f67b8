//go:build faultinject

package hypervisor

import (
	"fmt"
	"os"
)

// A binary built with -tags faultinject exits at the step VMRESTORE_FAULT_EXIT_AT names
// ("after-define": the domain is defined, not started; "after-pivot": an instant disk was
// switched to its copy, not yet recorded hydrated), as a worker that crashes there.
func init() {
	at := os.Getenv("VMRESTORE_FAULT_EXIT_AT")
	if at == "" {
		return
	}
	faultPoint = func(step string) {
		if step == at {
			fmt.Fprintf(os.Stderr, "fault injection: exiting at %s\n", step)
			os.Exit(3)
		}
	}
}
