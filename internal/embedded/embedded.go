// Package embedded runs the api's embedded mode, the one-command demo: an in-process Redis
// (miniredis), a generated demo site with its backups, the simulator as hypervisor, and the
// workers inside the api process. Only the api binary links it; the worker binary links no
// miniredis and no demo site (a test says so).
package embedded

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/alicebob/miniredis/v2"

	"github.com/vmrestore/vmrestore/internal/app"
	"github.com/vmrestore/vmrestore/internal/demosite"
)

// StartAPI starts the api: in the embedded mode when c has no Redis address, otherwise as
// app.StartAPI does.
func StartAPI(ctx context.Context, c app.Config, stdout io.Writer, log *slog.Logger) (*app.API, error) {
	if !c.Embedded() {
		return app.StartAPI(ctx, c, stdout, log)
	}
	// Pin the demo's defaults (the simulator, no host-local jobs) before Redis gets an
	// address, which ends "embedded" for c.
	c.Hypervisor, c.HostLocal = c.HypervisorName(), c.HostLocalMode()
	mini := miniredis.NewMiniRedis()
	mini.ClockTTL(true)
	if err := mini.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("start embedded redis: %w", err)
	}
	c.RedisAddr = mini.Addr()
	if c.SiteFile == "" {
		paths, err := demosite.Generate(c.DataDir)
		if err != nil {
			mini.Close()
			return nil, fmt.Errorf("generate the demo site in %s: %w", c.DataDir, err)
		}
		c.SiteFile = paths.SiteFile
	}
	return app.StartAPIWith(ctx, c, log, app.APIOptions{Embedded: true, Stop: mini.Close})
}

// Banner is app.Banner and, in the embedded mode, a curl walk-through that restores the
// demo VM.
func Banner(a *app.API, c app.Config) string {
	s := app.Banner(a, c)
	if !a.Embedded {
		return s
	}
	base := app.BaseURL(a)
	pw := `"$VMRESTORE_ADMIN_PASSWORD"`
	if a.Password != "" {
		pw = "'" + a.Password + "'"
	}
	var b strings.Builder
	b.WriteString(s)
	fmt.Fprintf(&b, "\nRestore the demo VM web01 (paste into a shell):\n\n")
	fmt.Fprintf(&b, "  SESSION=$(curl -s -X PUT %s/zstack/v1/accounts/login \\\n", base)
	fmt.Fprintf(&b, "    -d '{\"logInByAccount\":{\"accountName\":\"admin\",\"password\":\"'$(printf %%s %s | sha512sum | cut -d' ' -f1)'\"}}' \\\n", pw)
	fmt.Fprintf(&b, "    | sed -n 's/.*\"uuid\":\"\\([0-9a-f]*\\)\".*/\\1/p')\n")
	fmt.Fprintf(&b, "  curl -s -X POST %s/zstack/v1/vm-instances/from/vm-backups/%s \\\n", base, demosite.GroupWeb01UUID)
	fmt.Fprintf(&b, "    -H \"Authorization: OAuth $SESSION\" -H 'Content-Type: application/json' -H 'Prefer: wait=60' \\\n")
	fmt.Fprintf(&b, "    -d '{\"params\":{\"name\":\"web01-dr\",\"instanceOfferingUuid\":\"%s\",\"l3NetworkUuids\":[\"%s\"]}}'\n", demosite.OfferingSmall, demosite.L3ProdUUID)
	fmt.Fprintf(&b, "\nThe answer is the VM inventory (Prefer: wait=60 asks for it in one call; without it the call answers\n")
	fmt.Fprintf(&b, "202 with a location to poll, as ZStack does); its volumes are under %s.\n", c.DataDir)
	return b.String()
}
