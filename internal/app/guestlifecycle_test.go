package app_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/app"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/hypervisor"
	"github.com/vmrestore/vmrestore/internal/hypervisor/libvirttest"
)

// TestLifeCycleOfARealGuest restores a guest that boots (its console check passes), then
// stops it (cold), starts it, reboots it, destroys it (the domain stops but stays defined)
// and expunges it: the domain, its volume files and folders are gone, and the site is as
// it was before the restore.
func TestLifeCycleOfARealGuest(t *testing.T) {
	t.Parallel()
	e, img := guestEnv(t, func(c *app.Config) { c.GraceStop = 3 * time.Second })
	good := libvirttest.WriteGroup(t, sharedBackups(t), "testguest", img.Good, demosite.L3ProdUUID)
	waitGroupIndexed(t, e, good)
	before := e.siteUse()
	r, _ := e.restoreWithTags(good, guestParams("guest-life"), []string{guestReadyTag}, 4*time.Minute)
	mustf(t, r.status == 200, "restore: %d %s", r.status, r.body)
	inv := r.json()["inventory"].(map[string]any)
	vm := str(inv, "uuid")
	t.Cleanup(func() { libvirttest.RemoveDomain(t, hypervisor.LocalURI, vm) })
	domain := func() string { return libvirttest.DomainState(t, hypervisor.LocalURI, vm) }
	mustf(t, domain() == "running", "the restored guest is %q", domain())

	for _, step := range []struct {
		action string
		params map[string]any
		state  string
		domain string
	}{
		{"stopVmInstance", map[string]any{"type": "cold"}, "Stopped", "shut off"},
		{"startVmInstance", nil, "Running", "running"},
		{"rebootVmInstance", nil, "Running", "running"},
	} {
		start := time.Now()
		a := e.vmAction(vm, step.action, step.params)
		mustf(t, a.status == 200 && str(a.json()["inventory"].(map[string]any), "state") == step.state, "%s: %d %s", step.action, a.status, a.body)
		mustf(t, domain() == step.domain, "after %s virsh sees the domain %q", step.action, domain())
		t.Logf("%s: %s in %s", step.action, step.state, time.Since(start).Round(10*time.Millisecond))
	}
	d := e.vmOp(e.session, "DELETE", "/zstack/v1/vm-instances/"+vm, nil)
	mustf(t, d.status == 200 && e.vmState(vm) == "Destroyed", "destroy: %d %s", d.status, d.body)
	mustf(t, domain() == "shut off", "a destroyed VM's domain is stopped and kept (recoverable), virsh says %q", domain())
	x := e.vmAction(vm, "expungeVmInstance", nil)
	mustf(t, x.status == 200, "expunge: %d %s", x.status, x.body)
	mustf(t, libvirttest.CountDomains(t, hypervisor.LocalURI, vm) == 0, "the expunged VM's domain is still defined")
	for _, v := range inv["allVolumes"].([]any) {
		p := str(v.(map[string]any), "installPath")
		mustf(t, !fileExists(p) && !fileExists(filepath.Dir(p)), "expunge left %s or its folder", p)
	}
	e.checkInvariants()
	e.sameUse(before, e.siteUse(), "after the expunge")
}
