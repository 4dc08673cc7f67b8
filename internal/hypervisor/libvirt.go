package hypervisor

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/digitalocean/go-libvirt"

	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// Libvirt starts real guests through each host's libvirtd.
type Libvirt struct {
	Pool *Pool
	// DomainType is kvm, or qemu where the hosts have no /dev/kvm.
	DomainType string
	Log        *slog.Logger
	// GraceStop bounds how long a graceful stop waits for the guest (DefaultGraceStop when 0).
	GraceStop time.Duration
	// agentPollInterval is how often a guestAgent check pings (tests shorten it).
	agentPollInterval time.Duration
}

// Name names the driver.
func (l *Libvirt) Name() string { return "libvirt" }

// libvirt's domain states in ZStack's words.
func zstackState(s libvirt.DomainState) string {
	switch s {
	case libvirt.DomainRunning, libvirt.DomainBlocked:
		return zstack.VMRunning
	case libvirt.DomainPaused, libvirt.DomainPmsuspended:
		return "Paused"
	case libvirt.DomainShutoff, libvirt.DomainShutdown:
		return zstack.VMStopped
	case libvirt.DomainCrashed:
		return "Crashed"
	}
	return "Unknown"
}

func domainUUID(vmUUID string) (libvirt.UUID, error) {
	var u libvirt.UUID
	b, err := hex.DecodeString(vmUUID)
	if err != nil || len(b) != len(u) {
		return u, fmt.Errorf("vm uuid %q is not 32 hex characters", vmUUID)
	}
	copy(u[:], b)
	return u, nil
}

// lookup finds the VM's domain: found reports whether it exists, and owner is the job
// recorded in its metadata ("" when it has none: not made by vmrestore).
func (l *Libvirt) lookup(ctx context.Context, h Host, vmUUID string) (dom libvirt.Domain, state libvirt.DomainState, owner string, found bool, err error) {
	u, err := domainUUID(vmUUID)
	if err != nil {
		return dom, 0, "", false, err
	}
	err = l.Pool.Call(ctx, h, "look up domain "+vmUUID, func(lv *libvirt.Libvirt) error {
		d, err := lv.DomainLookupByUUID(u)
		if err != nil {
			return err
		}
		dom = d
		st, _, err := lv.DomainGetState(d, 0)
		if err != nil {
			return err
		}
		state = libvirt.DomainState(st)
		md, err := lv.DomainGetMetadata(d, int32(libvirt.DomainMetadataElement), libvirt.OptString{vmrestoreNamespace}, libvirt.DomainAffectCurrent)
		if err == nil {
			owner = between(md, "<job>", "</job>")
		}
		return nil
	})
	if libvirt.IsNotFound(err) {
		return dom, 0, "", false, nil
	}
	if err != nil {
		return dom, 0, "", false, err
	}
	return dom, state, owner, true, nil
}

func between(s, open, close string) string {
	_, rest, ok := strings.Cut(s, open)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, close)
	return v
}

// refused wraps an error libvirt answered (not a lost connection) for a domain that cannot
// be created or started as built: no retry will help.
func refused(what string, h Host, err error) error {
	var le libvirt.Error
	if errors.As(err, &le) {
		return fmt.Errorf("%w: %s on %s: %s", ErrNotBootable, what, h, le.Message)
	}
	if errors.Is(err, ErrUnreachable) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s on %s: %w", what, h, err)
	}
	return fmt.Errorf("%s on %s: %v", what, h, err)
}

// Instantiate defines (CreateStopped) or defines and starts (InstantStart) the domain,
// carrying on from whatever an earlier attempt left, then runs the boot check.
func (l *Libvirt) Instantiate(ctx context.Context, vm *VM, strategy string, check *job.BootCheck) (*Outcome, error) {
	if strategy == zstack.StrategyJustCreate {
		return &Outcome{State: zstack.VMCreated}, nil
	}
	xml, err := DomainXML(vm, l.DomainType)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotBootable, err)
	}
	h := vm.Host
	dom, state, owner, found, err := l.lookup(ctx, h, vm.UUID)
	if err != nil {
		return nil, err
	}
	if found && owner != vm.JobUUID {
		return nil, fmt.Errorf("%w: %s already has a domain with uuid %s that this restore did not make (its job: %q); choose another resourceUuid",
			ErrNotBootable, h, vm.UUID, owner)
	}
	// A domain that does not run is (re)defined from the XML built now, never started from
	// the definition libvirt kept: after a pull that definition has an empty <backingStore/>.
	if !found || !active(state) {
		if vm.BeforeDefine != nil && !found {
			if err := vm.BeforeDefine(ctx); err != nil {
				return nil, err
			}
		}
		err = l.Pool.Call(ctx, h, "define domain "+vm.UUID, func(lv *libvirt.Libvirt) error {
			d, err := lv.DomainDefineXMLFlags(xml, libvirt.DomainDefineValidate)
			dom = d
			return err
		})
		if err != nil {
			return nil, refused("define domain "+vm.UUID, h, err)
		}
		if !found {
			state = libvirt.DomainShutoff
			l.Log.Info("domain defined", "vm", vm.UUID, "host", h.UUID)
			faultPoint("after-define")
		}
	}
	if strategy == zstack.StrategyCreateStopped {
		return l.readBack(ctx, h, dom, nil)
	}

	console := check != nil && check.Mode == job.BootConsole
	if console && state != libvirt.DomainShutoff {
		// An earlier attempt started the guest but did not see its check pass; its boot
		// output is gone, so it boots again from the start.
		l.Log.Info("domain already started by an earlier attempt; restarting it so the console check sees the boot", "vm", vm.UUID, "host", h.UUID)
		if err := l.Pool.Call(ctx, h, "stop domain "+vm.UUID, func(lv *libvirt.Libvirt) error {
			return lv.DomainDestroyFlags(dom, libvirt.DomainDestroyDefault)
		}); err != nil && !operationInvalid(err) {
			return nil, refused("stop domain "+vm.UUID, h, err)
		}
		state = libvirt.DomainShutoff
	}

	var watch *consoleWatch
	if console {
		// Start paused, attach to the console, then resume: not one line of the boot is lost.
		if err := l.start(ctx, h, dom, libvirt.DomainStartPaused); err != nil {
			return nil, err
		}
		watch, err = l.watchConsole(ctx, h, dom, check)
		if err != nil {
			return nil, err
		}
		defer watch.close()
		if err := l.Pool.Call(ctx, h, "resume domain "+vm.UUID, func(lv *libvirt.Libvirt) error { return lv.DomainResume(dom) }); err != nil {
			return nil, refused("resume domain "+vm.UUID, h, err)
		}
	} else {
		switch state {
		case libvirt.DomainShutoff, libvirt.DomainShutdown, libvirt.DomainCrashed:
			if err := l.start(ctx, h, dom, 0); err != nil {
				return nil, err
			}
		case libvirt.DomainPaused:
			if err := l.Pool.Call(ctx, h, "resume domain "+vm.UUID, func(lv *libvirt.Libvirt) error { return lv.DomainResume(dom) }); err != nil {
				return nil, refused("resume domain "+vm.UUID, h, err)
			}
		}
	}
	l.Log.Info("domain started", "vm", vm.UUID, "host", h.UUID)
	return l.readBack(ctx, h, dom, func() (string, error) { return l.bootCheck(ctx, h, dom, check, watch) })
}

// active reports whether a domain has a running QEMU (running, paused, blocked...).
func active(s libvirt.DomainState) bool {
	switch s {
	case libvirt.DomainShutoff, libvirt.DomainShutdown, libvirt.DomainCrashed, libvirt.DomainNostate:
		return false
	}
	return true
}

func operationInvalid(err error) bool {
	var le libvirt.Error
	return errors.As(err, &le) && le.Code == uint32(libvirt.ErrOperationInvalid)
}

func (l *Libvirt) start(ctx context.Context, h Host, dom libvirt.Domain, flags libvirt.DomainCreateFlags) error {
	err := l.Pool.Call(ctx, h, "start domain "+dom.Name, func(lv *libvirt.Libvirt) error {
		_, err := lv.DomainCreateWithFlags(dom, uint32(flags))
		return err
	})
	if err != nil {
		return refused("start domain "+dom.Name, h, err)
	}
	return nil
}

// readBack runs the boot check, if any, then reads the domain's state: the job records what
// the host said.
func (l *Libvirt) readBack(ctx context.Context, h Host, dom libvirt.Domain, check func() (string, error)) (*Outcome, error) {
	out := &Outcome{}
	if check != nil {
		passed, err := check()
		if err != nil {
			return nil, err
		}
		out.BootCheck = passed
	}
	err := l.Pool.Call(ctx, h, "read the state of domain "+dom.Name, func(lv *libvirt.Libvirt) error {
		st, _, err := lv.DomainGetState(dom, 0)
		out.State = zstackState(libvirt.DomainState(st))
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Destroy stops and undefines the VM's domain if this job made it. Not found counts as done;
// a domain another restore made is left alone.
func (l *Libvirt) Destroy(ctx context.Context, vmUUID, jobUUID string, h Host) error {
	dom, _, owner, found, err := l.lookup(ctx, h, vmUUID)
	if err != nil || !found {
		return err
	}
	if owner != jobUUID {
		l.Log.Warn("not removing a domain this restore did not make", "vm", vmUUID, "host", h.UUID, "owner", owner)
		return nil
	}
	err = l.Pool.Call(ctx, h, "destroy domain "+vmUUID, func(lv *libvirt.Libvirt) error {
		return lv.DomainDestroyFlags(dom, libvirt.DomainDestroyDefault)
	})
	if err != nil && !operationInvalid(err) && !libvirt.IsNotFound(err) {
		return fmt.Errorf("destroy domain %s on %s: %w", vmUUID, h, err)
	}
	err = l.Pool.Call(ctx, h, "undefine domain "+vmUUID, func(lv *libvirt.Libvirt) error {
		err := lv.DomainUndefineFlags(dom, libvirt.DomainUndefineManagedSave|libvirt.DomainUndefineNvram)
		var le libvirt.Error
		if errors.As(err, &le) && le.Code == uint32(libvirt.ErrInvalidArg) {
			err = lv.DomainUndefineFlags(dom, 0) // a driver without managed save or NVRAM
		}
		return err
	})
	if err != nil && !libvirt.IsNotFound(err) {
		return fmt.Errorf("undefine domain %s on %s: %w", vmUUID, h, err)
	}
	l.Log.Info("domain destroyed and undefined", "vm", vmUUID, "host", h.UUID)
	return nil
}

// DefaultGraceStop is how long a graceful stop waits for the guest to power off before it
// forces the domain off (ZStack's KVM agent does the same).
const DefaultGraceStop = 60 * time.Second

// ownDomain looks the VM's domain up and refuses one this VM's restore did not make.
func (l *Libvirt) ownDomain(ctx context.Context, h Host, vmUUID, jobUUID string) (libvirt.Domain, libvirt.DomainState, bool, error) {
	dom, state, owner, found, err := l.lookup(ctx, h, vmUUID)
	if err != nil || !found {
		return dom, state, found, err
	}
	if owner != jobUUID {
		return dom, state, true, fmt.Errorf("%w: the domain %s on %s was not made by the restore of this VM (its job: %q); vmrestore leaves it alone",
			ErrNotBootable, vmUUID, h, owner)
	}
	return dom, state, true, nil
}

// Stop shuts the domain down (gracefully first when asked), keeping its definition.
func (l *Libvirt) Stop(ctx context.Context, vmUUID, jobUUID string, h Host, graceful bool) error {
	dom, state, found, err := l.ownDomain(ctx, h, vmUUID, jobUUID)
	if err != nil || !found || state == libvirt.DomainShutoff {
		return err
	}
	if graceful && state == libvirt.DomainRunning {
		err := l.Pool.Call(ctx, h, "shut down domain "+vmUUID, func(lv *libvirt.Libvirt) error { return lv.DomainShutdown(dom) })
		if err == nil && l.waitOff(ctx, h, dom) {
			l.Log.Info("domain shut down by its guest", "vm", vmUUID, "host", h.UUID)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		l.Log.Warn("the guest did not shut down in time; forcing the domain off", "vm", vmUUID, "host", h.UUID, "waited", l.graceStop().String(), "err", err)
	}
	err = l.Pool.Call(ctx, h, "stop domain "+vmUUID, func(lv *libvirt.Libvirt) error {
		return lv.DomainDestroyFlags(dom, libvirt.DomainDestroyDefault)
	})
	if err != nil && !operationInvalid(err) && !libvirt.IsNotFound(err) {
		return fmt.Errorf("stop domain %s on %s: %w", vmUUID, h, err)
	}
	l.Log.Info("domain stopped", "vm", vmUUID, "host", h.UUID, "graceful", graceful)
	return nil
}

func (l *Libvirt) graceStop() time.Duration {
	if l.GraceStop > 0 {
		return l.GraceStop
	}
	return DefaultGraceStop
}

// waitOff polls the domain's state until it is off, for at most the grace bound.
func (l *Libvirt) waitOff(ctx context.Context, h Host, dom libvirt.Domain) bool {
	deadline := time.Now().Add(l.graceStop())
	for time.Now().Before(deadline) {
		var st int32
		err := l.Pool.Call(ctx, h, "read the state of domain "+dom.Name, func(lv *libvirt.Libvirt) error {
			var err error
			st, _, err = lv.DomainGetState(dom, 0)
			return err
		})
		if err == nil && libvirt.DomainState(st) == libvirt.DomainShutoff {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(250 * time.Millisecond):
		}
	}
	return false
}

// Start starts the VM's defined domain.
func (l *Libvirt) Start(ctx context.Context, vmUUID, jobUUID string, h Host) (string, error) {
	dom, state, found, err := l.ownDomain(ctx, h, vmUUID, jobUUID)
	if err != nil {
		return "", err
	}
	if !found {
		return "", fmt.Errorf("%w: %s has no domain for VM %s", ErrNotBootable, h, vmUUID)
	}
	switch state {
	case libvirt.DomainShutoff, libvirt.DomainShutdown, libvirt.DomainCrashed:
		if err := l.start(ctx, h, dom, 0); err != nil {
			return "", err
		}
	case libvirt.DomainPaused:
		if err := l.Pool.Call(ctx, h, "resume domain "+vmUUID, func(lv *libvirt.Libvirt) error { return lv.DomainResume(dom) }); err != nil {
			return "", refused("resume domain "+vmUUID, h, err)
		}
	}
	out, err := l.readBack(ctx, h, dom, nil)
	if err != nil {
		return "", err
	}
	l.Log.Info("domain started", "vm", vmUUID, "host", h.UUID)
	return out.State, nil
}
