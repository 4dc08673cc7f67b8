// Package hypervisor hands restored VMs to a hypervisor. vmrestore ships one driver, the
// Simulator: it starts no guest. It records in Redis the state ZStack would report for the
// requested strategy (InstantStart → Running, CreateStopped → Stopped, JustCreate →
// Created), counts it in vmrestore_hypervisor_simulated_vms_total, and says so in its log.
// Everything before it (placement, addresses, volume files) is real.
package hypervisor

import (
	"context"
	"log/slog"

	"github.com/vmrestore/vmrestore/internal/metrics"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// Driver instantiates and destroys VMs.
type Driver interface {
	// Instantiate brings a VM to the state its strategy asks for and returns that state.
	Instantiate(ctx context.Context, vmUUID, hostUUID, strategy string) (string, error)
	// Destroy removes a VM from the hypervisor; destroying an unknown VM is harmless.
	Destroy(ctx context.Context, vmUUID string) error
	// Name is shown in logs and /healthz.
	Name() string
}

// Simulator is the built-in driver: it records states and starts nothing.
type Simulator struct {
	Store   *store.Store
	Metrics *metrics.Metrics
	Log     *slog.Logger
}

// StateFor returns the VM state a strategy ends in.
func StateFor(strategy string) string {
	switch strategy {
	case zstack.StrategyCreateStopped:
		return zstack.VMStopped
	case zstack.StrategyJustCreate:
		return zstack.VMCreated
	}
	return zstack.VMRunning
}

// Instantiate records the VM's state for its strategy.
func (s *Simulator) Instantiate(ctx context.Context, vmUUID, hostUUID, strategy string) (string, error) {
	state := StateFor(strategy)
	if err := s.Store.PutSimulatedDomain(ctx, vmUUID, store.SimulatedDomain{HostUUID: hostUUID, State: state}); err != nil {
		return "", err
	}
	s.Metrics.SimulatedVMs.WithLabelValues(state).Inc()
	s.Log.Info("simulated hypervisor recorded the VM; no guest was started", "vm", vmUUID, "host", hostUUID, "state", state)
	return state, nil
}

// Destroy forgets the VM.
func (s *Simulator) Destroy(ctx context.Context, vmUUID string) error {
	return s.Store.DeleteSimulatedDomain(ctx, vmUUID)
}

// Name names the driver.
func (s *Simulator) Name() string { return "simulator" }
