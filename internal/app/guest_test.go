package app_test

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/app"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/hypervisor"
	"github.com/vmrestore/vmrestore/internal/hypervisor/libvirttest"
)

// guestBridge is the bridge the restored guests' NICs join: br_<physicalInterface> of the
// demo site's production L2, renamed for the test.
const (
	guestInterface = "vmrt0"
	guestBridge    = "br_" + guestInterface
	guestReadyTag  = "bootCheck::console:" + libvirttest.GuestReady + "::180"
)

// guestEnv is vmrestore with the libvirt driver on this machine's libvirtd (every host of
// the demo site is reached at qemu:///system), emulated guests, and primary storages that
// the qemu user can read.
func guestEnv(t *testing.T, edit func(*app.Config)) (*env, *libvirttest.GuestImage) {
	return guestEnvWith(t, edit, false)
}

func guestEnvWith(t *testing.T, edit func(*app.Config), noWorker bool, editSite ...func(*catalog.Site)) (*env, *libvirttest.GuestImage) {
	t.Helper()
	libvirttest.NeedQEMU(t) // one of the machine's guest slots, shared with the other packages' guest tests
	img := libvirttest.BuildGuestImage(t)
	libvirttest.Bridge(t, guestBridge)
	storage := libvirttest.GuestDir(t)
	for _, d := range []string{"nfs", "local"} {
		if err := os.MkdirAll(filepath.Join(storage, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e := newEnv(t, envOptions{
		noWorker: noWorker,
		site: func(s *catalog.Site) {
			for i := range s.PrimaryStorages {
				if s.PrimaryStorages[i].Type == catalog.PSNFS {
					s.PrimaryStorages[i].URL = filepath.Join(storage, "nfs")
				} else {
					s.PrimaryStorages[i].URL = filepath.Join(storage, "local")
				}
			}
			for i := range s.L2Networks {
				if s.L2Networks[i].UUID == demosite.L2ProdUUID {
					s.L2Networks[i].PhysicalInterface = guestInterface
				}
			}
			for _, edit := range editSite {
				edit(s)
			}
		},
		config: func(c *app.Config) {
			c.Hypervisor, c.LibvirtURI, c.LibvirtDomainType = app.HypervisorLibvirt, hypervisor.LocalURI, hypervisor.DomainQEMU
			if edit != nil {
				edit(c)
			}
		},
	})
	// A guest's tap device is vnic<internalId>.<n>, and every test's site counts internal ids
	// from 1: two test processes starting guests at once on this machine's libvirtd would
	// both ask for vnic1.0 ("interface already exists"). Each env counts from a random start.
	if err := e.redis.Client().Set(context.Background(), "vmr:seq:vm", 1000+rand.N(9_000_000), 0).Err(); err != nil {
		t.Fatal(err)
	}
	return e, img
}

// guestParams restores a group as a 96 MiB guest on the NFS cluster with a NIC on the
// production network.
func guestParams(name string) map[string]any {
	return map[string]any{"name": name, "cpuNum": 1, "memorySize": 96 << 20, "clusterUuid": demosite.ClusterAUUID,
		"l3NetworkUuids": []string{demosite.L3ProdUUID}}
}

// restoreWithTags posts a restore with system tags and polls it to its end.
func (e *env) restoreWithTags(group string, params map[string]any, tags []string, within time.Duration) (response, string) {
	e.t.Helper()
	return e.submitWithTags(group, params, tags)(within)
}

// submitWithTags posts a restore with system tags and returns what polls it to its end, so
// that a test can let several restores run at once.
func (e *env) submitWithTags(group string, params map[string]any, tags []string) (wait func(within time.Duration) (response, string)) {
	e.t.Helper()
	r := e.do("POST", "/zstack/v1/vm-instances/from/vm-backups/"+group, e.session,
		map[string]any{"params": params, "systemTags": tags}, map[string]string{"Prefer": "respond-async"})
	if r.status != 202 {
		e.t.Fatalf("restore: %d %s", r.status, r.body)
	}
	loc := str(r.json(), "location")
	return func(within time.Duration) (response, string) {
		e.t.Helper()
		return e.poll(loc, within), loc[strings.LastIndex(loc, "/")+1:]
	}
}

// TestRestoreBootsARealGuest restores a backup group whose disk boots, starts it as a real
// domain and proves by the console boot check that the restored disk is what booted; then
// restores a broken disk, whose check fails and leaves nothing behind. The two restores run
// at once: they share nothing but the site, and each waits on an emulated boot.
func TestRestoreBootsARealGuest(t *testing.T) {
	t.Parallel()
	e, img := guestEnv(t, nil)
	ctx := context.Background()
	backups := sharedBackups(t)
	good := libvirttest.WriteGroup(t, backups, "testguest", img.Good, demosite.L3ProdUUID)
	broken := libvirttest.WriteGroup(t, backups, "testguest-broken", img.Broken, demosite.L3ProdUUID)

	start := time.Now()
	waitGood := e.submitWithTags(good, guestParams("guest-ok"), []string{guestReadyTag})
	// The broken guest's kernel panics: its check fails at the panic line, long before the
	// check's limit, which only bounds a boot slowed by a loaded machine.
	waitBroken := e.submitWithTags(broken, guestParams("guest-broken"), []string{guestReadyTag})
	r, jobUUID := waitGood(4 * time.Minute)
	if r.status != 200 {
		t.Fatalf("restore of a bootable group: %d %s", r.status, r.body)
	}
	vm := r.json()["inventory"].(map[string]any)
	vmUUID := str(vm, "uuid")
	t.Cleanup(func() { libvirttest.RemoveDomain(t, hypervisor.LocalURI, vmUUID) })
	t.Logf("restored, started and boot-checked in %s", time.Since(start).Round(100*time.Millisecond))
	mustf(t, str(vm, "state") == "Running" && str(vm, "hostUuid") != "", "inventory state %q host %q", str(vm, "state"), str(vm, "hostUuid"))
	mustf(t, libvirttest.DomainState(t, hypervisor.LocalURI, vmUUID) == "running", "virsh does not see the domain running")
	xml, err := libvirttest.Virsh(t, hypervisor.LocalURI, "dumpxml", vmUUID)
	if err != nil {
		t.Fatal(err)
	}
	root := vm["allVolumes"].([]any)[0].(map[string]any)
	mustf(t, strings.Contains(xml, str(root, "installPath")), "the domain does not boot the restored volume %s:\n%s", str(root, "installPath"), xml)
	mustf(t, strings.Contains(xml, "<source bridge='"+guestBridge+"'/>"), "the NIC is not on %s", guestBridge)
	rec, err := e.store.GetJob(ctx, jobUUID)
	if err != nil {
		t.Fatal(err)
	}
	mustf(t, rec.Checkpoints.Instance != nil && strings.Contains(rec.Checkpoints.Instance.BootCheck, libvirttest.GuestReady),
		"the job does not record how the boot check passed: %+v", rec.Checkpoints.Instance)

	// A disk that does not boot: the check fails with the console's last lines, and the job
	// is compensated — no domain, no volume file, no address left.
	r, jobUUID = waitBroken(3 * time.Minute)
	ec := r.errorCode()
	details := errorDetails(ec)
	mustf(t, str(ec, "code") == "SYS.1006" && strings.Contains(details, "boot check") && strings.Contains(details, "kernel panicked") &&
		strings.Contains(details, "Kernel panic"),
		"the broken guest's failure does not say what the console showed: %v", ec)
	rec, err = e.store.GetJob(ctx, jobUUID)
	if err != nil {
		t.Fatal(err)
	}
	mustf(t, rec.VMUUID != "" && libvirttest.CountDomains(t, hypervisor.LocalURI, rec.VMUUID) == 0, "the broken guest's domain was left defined")
	for _, f := range rec.Checkpoints.Volumes {
		if _, err := os.Stat(f.InstallPath); !os.IsNotExist(err) {
			t.Fatalf("the broken guest's volume %s was left: %v", f.InstallPath, err)
		}
	}
	e.checkInvariants()
}

// TestRestoreStrategiesOnLibvirt: CreateStopped defines a domain that does not run;
// JustCreate touches no host; a boot check on a strategy that does not start is refused.
func TestRestoreStrategiesOnLibvirt(t *testing.T) {
	t.Parallel()
	e, img := guestEnv(t, nil)
	group := libvirttest.WriteGroup(t, sharedBackups(t), "testguest-stopped", img.Good, demosite.L3ProdUUID)

	p := guestParams("guest-stopped")
	p["strategy"] = "CreateStopped"
	r, _ := e.restoreWithTags(group, p, nil, 2*time.Minute)
	mustf(t, r.status == 200, "CreateStopped: %d %s", r.status, r.body)
	vm := r.json()["inventory"].(map[string]any)
	stopped := str(vm, "uuid")
	t.Cleanup(func() { libvirttest.RemoveDomain(t, hypervisor.LocalURI, stopped) })
	mustf(t, str(vm, "state") == "Stopped", "state %q", str(vm, "state"))
	mustf(t, libvirttest.DomainState(t, hypervisor.LocalURI, str(vm, "uuid")) == "shut off", "virsh does not see a defined, stopped domain")

	p = guestParams("guest-record")
	p["strategy"] = "JustCreate"
	r, _ = e.restoreWithTags(group, p, nil, time.Minute)
	mustf(t, r.status == 200, "JustCreate: %d %s", r.status, r.body)
	vm = r.json()["inventory"].(map[string]any)
	mustf(t, str(vm, "state") == "Created" && libvirttest.DomainState(t, hypervisor.LocalURI, str(vm, "uuid")) == "", "JustCreate touched a host")

	p["strategy"] = "CreateStopped"
	bad := e.do("POST", "/zstack/v1/vm-instances/from/vm-backups/"+group, e.session,
		map[string]any{"params": p, "systemTags": []string{"bootCheck::running"}}, map[string]string{"Prefer": "wait=60"})
	mustf(t, bad.status == 503 && str(bad.errorCode(), "code") == "SYS.1007" && strings.Contains(string(bad.body), "InstantStart"),
		"a boot check on CreateStopped: %d %s", bad.status, bad.body)
}

// errorDetails joins the details of an error and its causes.
func errorDetails(ec map[string]any) string {
	var parts []string
	for m := ec; m != nil; {
		parts = append(parts, str(m, "details"))
		m, _ = m["cause"].(map[string]any)
	}
	return strings.Join(parts, " / ")
}
