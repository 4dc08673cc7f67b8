package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/hypervisor"
	"github.com/vmrestore/vmrestore/internal/metrics"
	"github.com/vmrestore/vmrestore/internal/store"
)

// boundHosts resolves VMRESTORE_HOST_UUIDS: the listed hosts, or with "auto" the hosts of the
// site catalog whose managementIp is an address of this machine (it waits for the catalog).
func boundHosts(ctx context.Context, c Config, cache *store.CatalogCache, log *slog.Logger) ([]string, error) {
	auto, uuids, err := parseHostBinding(c.HostUUIDs)
	if err != nil {
		return nil, err
	}
	if !auto {
		return uuids, nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("VMRESTORE_HOST_UUIDS=auto: list this machine's addresses: %w", err)
	}
	mine := map[string]bool{}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			mine[ipn.IP.String()] = true
		}
	}
	var ix *catalog.Index
	for i := 0; ; i++ {
		ix, err = cache.Current(ctx)
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrNotFound) && !store.Unavailable(err) {
			return nil, err
		}
		if i%20 == 0 {
			log.Warn("VMRESTORE_HOST_UUIDS=auto waits for the site catalog (the api loads it)")
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	for _, h := range ix.Site.Hosts {
		if h.ManagementIP != "" && mine[h.ManagementIP] {
			uuids = append(uuids, h.UUID)
		}
	}
	if len(uuids) == 0 {
		log.Warn("VMRESTORE_HOST_UUIDS=auto matched no host: no host's managementIp is an address of this machine; this worker serves the shared queue only")
	}
	return uuids, nil
}

// newHypervisor builds the configured driver. bound hosts are reached at qemu:///system.
func newHypervisor(c Config, st *store.Store, m *metrics.Metrics, bound []string, log *slog.Logger) (hypervisor.Driver, func()) {
	if c.HypervisorName() == HypervisorSimulator {
		if !c.Embedded() {
			log.Warn("VMRESTORE_HYPERVISOR=simulator: this worker starts no guest, it only records VM states; use libvirt to restore onto real hosts")
		}
		return &hypervisor.Simulator{Store: st, Metrics: m, Log: log}, func() {}
	}
	local := map[string]bool{}
	for _, h := range bound {
		local[h] = true
	}
	pool := &hypervisor.Pool{Template: c.LibvirtURI, LocalHosts: local, CallTimeout: c.LibvirtTimeout, Log: log}
	log.Info("hypervisor: libvirt", "uri", hypervisor.RedactedTemplate(c.LibvirtURI), "domainType", c.LibvirtDomainType, "boundHosts", bound)
	return &hypervisor.Libvirt{Pool: pool, DomainType: c.LibvirtDomainType, GraceStop: c.GraceStop, Log: log}, pool.Close
}
