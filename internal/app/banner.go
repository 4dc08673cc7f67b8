package app

import (
	"fmt"
	"strings"

	"github.com/vmrestore/vmrestore/internal/hypervisor"
)

// BaseURL is the address a user on this machine reaches the api at.
func BaseURL(a *API) string {
	host := a.Addr
	if strings.HasPrefix(host, "[::]:") || strings.HasPrefix(host, "0.0.0.0:") {
		host = "127.0.0.1:" + host[strings.LastIndex(host, ":")+1:]
	}
	if a.TLS {
		return "https://" + host
	}
	return "http://" + host
}

// Banner describes a started api for a new user: where it listens, the mode, the admin
// credentials and how to log in (the embedded mode adds its quick start: embedded.Banner).
func Banner(a *API, c Config) string {
	base := BaseURL(a)
	var b strings.Builder
	fmt.Fprintf(&b, "vmrestore api listening on %s\n", base)
	if a.Embedded {
		fmt.Fprintf(&b, "  mode:       EMBEDDED: in-process Redis and workers; all state is IN MEMORY and lost when this process exits\n")
		if c.HypervisorName() == HypervisorSimulator {
			fmt.Fprintf(&b, "  hypervisor: simulator, for this demo only (volume files are really restored; no guest is started, VM states are recorded; VMRESTORE_HYPERVISOR=libvirt starts real guests)\n")
		} else {
			fmt.Fprintf(&b, "  hypervisor: libvirt (%s, domain type %s)\n", hypervisor.RedactedTemplate(c.LibvirtURI), c.LibvirtDomainType)
		}
	} else {
		fmt.Fprintf(&b, "  mode:       Redis at %s; run cmd/worker processes to execute restores\n", c.RedisAddr)
	}
	fmt.Fprintf(&b, "  site:       %s\n", a.Site)
	pw := `"$VMRESTORE_ADMIN_PASSWORD"`
	switch {
	case a.Password != "":
		pw = "'" + a.Password + "'"
		if a.Embedded {
			fmt.Fprintf(&b, "  login:      admin / %s   (new at every start: the state is in memory; set VMRESTORE_ADMIN_PASSWORD to choose it)\n", a.Password)
		} else {
			fmt.Fprintf(&b, "  login:      admin / %s   (generated for this Redis and shown only now; set VMRESTORE_ADMIN_PASSWORD to choose it)\n", a.Password)
		}
	case c.AdminPassword != "":
		fmt.Fprintf(&b, "  login:      admin / the password in VMRESTORE_ADMIN_PASSWORD\n")
	default:
		fmt.Fprintf(&b, "  login:      admin / the password set earlier (set VMRESTORE_ADMIN_PASSWORD to reset it)\n")
	}
	fmt.Fprintf(&b, "  restorectl: printf %%s %s | restorectl login --url %s --password-stdin   (go build ./cmd/restorectl)\n", pw, base)
	return b.String()
}
