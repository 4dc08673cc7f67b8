package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/metrics"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// Simulator is the embedded demo's driver: it records states and starts nothing.
type Simulator struct {
	Store   *store.Store
	Metrics *metrics.Metrics
	Log     *slog.Logger
}

// Instantiate records the VM's state for its strategy. A boot check of the running kind
// passes (the recorded state is Running); a console or guest agent check cannot, since no
// guest exists, and fails saying so.
func (s *Simulator) Instantiate(ctx context.Context, vm *VM, strategy string, check *job.BootCheck) (*Outcome, error) {
	state := StateFor(strategy)
	if check != nil && check.Mode != job.BootRunning {
		return nil, &BootCheckError{Check: check, Reason: "the simulator hypervisor starts no guest, so nothing can print on a console or answer as a guest agent; run the workers with VMRESTORE_HYPERVISOR=libvirt"}
	}
	if strategy == zstack.StrategyJustCreate {
		return &Outcome{State: state}, nil
	}
	if vm.BeforeDefine != nil {
		if err := vm.BeforeDefine(ctx); err != nil {
			return nil, err
		}
	}
	if err := s.Store.PutSimulatedDomain(ctx, vm.UUID, store.SimulatedDomain{HostUUID: vm.Host.UUID, State: state}); err != nil {
		return nil, err
	}
	s.Metrics.SimulatedVMs.WithLabelValues(state).Inc()
	s.Log.Info("simulated hypervisor recorded the VM; no guest was started", "vm", vm.UUID, "host", vm.Host.UUID, "state", state)
	out := &Outcome{State: state}
	if check != nil && state == zstack.VMRunning {
		out.BootCheck = fmt.Sprintf("%s: the simulator recorded the VM as running", check.Spec())
	}
	return out, nil
}

// Destroy forgets the VM.
func (s *Simulator) Destroy(ctx context.Context, vmUUID, _ string, _ Host) error {
	return s.Store.DeleteSimulatedDomain(ctx, vmUUID)
}

// Stop records the VM as stopped.
func (s *Simulator) Stop(ctx context.Context, vmUUID, _ string, _ Host, _ bool) error {
	d, err := s.Store.GetSimulatedDomain(ctx, vmUUID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	d.State = zstack.VMStopped
	return s.Store.PutSimulatedDomain(ctx, vmUUID, *d)
}

// Start records the VM as running; a VM the simulator never recorded cannot start.
func (s *Simulator) Start(ctx context.Context, vmUUID, _ string, h Host) (string, error) {
	d, err := s.Store.GetSimulatedDomain(ctx, vmUUID)
	if errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("%w: the simulator has no domain for VM %s on %s", ErrNotBootable, vmUUID, h)
	}
	if err != nil {
		return "", err
	}
	d.State = zstack.VMRunning
	if err := s.Store.PutSimulatedDomain(ctx, vmUUID, *d); err != nil {
		return "", err
	}
	return d.State, nil
}

// Name names the driver.
func (s *Simulator) Name() string { return "simulator" }
