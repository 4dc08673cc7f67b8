package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/backupmaker"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/clone"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// exitVerifyFailed ends `backup verify` when a backup is bad (the same code as a failed plan:
// the command ran, and what it checked failed).
const exitVerifyFailed = exitPlanFailed

// platforms are ZStack's image platforms.
var platforms = []string{"Linux", "Windows", "WindowsVirtio", "Other", "Paravirtualization"}

// storageRef is a --storage value resolved to a folder on this machine.
type storageRef struct {
	Dir  string // the folder, as this machine sees it
	UUID string // the catalog's uuid, when resolved through the api
	Name string
}

func (s *storageRef) String() string {
	if s.UUID == "" {
		return s.Dir
	}
	return fmt.Sprintf("%s (%s, %s)", s.Name, s.UUID, s.Dir)
}

// resolveStorage turns --storage into a folder: a value with a '/' is a folder of this
// machine; anything else is a backup storage of the site catalog, by uuid or name, whose
// url the api gives (this machine must mount it at the same path).
func (a *cli) resolveStorage(ref string) (*storageRef, error) {
	if ref == "" {
		return nil, &usageError{err: errors.New("--storage is required: a backup storage's uuid or name (from the site catalog, through the api), or a folder with a '/' in it (./backups, /srv/backup)")}
	}
	if strings.ContainsRune(ref, os.PathSeparator) {
		st, err := os.Stat(ref)
		if err != nil {
			return nil, fmt.Errorf("--storage %s: %w", ref, err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("--storage %s is not a folder", ref)
		}
		abs, err := filepath.Abs(ref)
		if err != nil {
			return nil, err
		}
		return &storageRef{Dir: abs}, nil
	}
	c, err := a.client()
	if err != nil {
		return nil, err
	}
	bs, err := c.FindBackupStorage(a.ctx, ref)
	if err != nil {
		if _, serr := os.Stat(ref); serr == nil {
			return nil, fmt.Errorf("%w (for the folder %s of this machine, give a path with a '/': --storage ./%s)", err, ref, ref)
		}
		return nil, err
	}
	st, err := os.Stat(bs.URL)
	if err != nil || !st.IsDir() {
		return nil, fmt.Errorf("backup storage %s is the folder %s on the site, and this machine has no such folder (%v): "+
			"mount the backup storage there, or give the folder where this machine mounts it (--storage /path/to/it)", bs.Name, bs.URL, err)
	}
	return &storageRef{Dir: bs.URL, UUID: bs.UUID, Name: bs.Name}, nil
}

func (a *cli) backupCommand() *cobra.Command {
	cmd := group(&cobra.Command{Use: "backup", Short: "Take, list, show, verify and delete backup groups on a backup storage",
		Long: `Backup groups on a backup storage folder: take one from disk images (create), list the
groups of a storage, show one, verify (re-read every volume file and check its checksum), and
delete one.

These commands read and write the backup storage folder on this machine. --storage names it:
a backup storage of the site catalog by uuid or name (its url comes from the api, after
restorectl login; this machine must mount the storage at that path), or a folder path
containing a '/' (no api needed).`})
	cmd.PersistentFlags().String("storage", a.getenv("RESTORECTL_BACKUP_STORAGE"),
		"backup storage: uuid or name from the site catalog, or a folder path with a '/' (env RESTORECTL_BACKUP_STORAGE)")
	cmd.AddCommand(a.backupCreateCommand(), a.backupListCommand(), a.backupShowCommand(), a.backupVerifyCommand(), a.backupDeleteCommand())
	return cmd
}

func storageFlag(cmd *cobra.Command) string {
	v, _ := cmd.Flags().GetString("storage")
	return v
}

// nicFlag parses --nic <l3uuid>[,<mac>[,<ip>]].
func nicFlag(v string, device int) (backup.SourceNic, error) {
	parts := strings.Split(v, ",")
	if len(parts) > 3 {
		return backup.SourceNic{}, fmt.Errorf("--nic %q: expected <l3NetworkUuid>[,<mac>[,<ip>]]", v)
	}
	n := backup.SourceNic{L3NetworkUUID: strings.TrimSpace(parts[0]), DeviceID: device, DriverType: "virtio"}
	if !zstack.IsUUID(n.L3NetworkUUID) {
		return n, fmt.Errorf("--nic %q: %q is not an L3 network uuid (32 hex characters)", v, n.L3NetworkUUID)
	}
	if len(parts) > 1 && strings.TrimSpace(parts[1]) != "" {
		mac, err := zstack.NormalizeMac(strings.TrimSpace(parts[1]))
		if err != nil {
			return n, fmt.Errorf("--nic %q: %v", v, err)
		}
		n.Mac = mac
	}
	if len(parts) > 2 && strings.TrimSpace(parts[2]) != "" {
		ip, err := netip.ParseAddr(strings.TrimSpace(parts[2]))
		if err != nil || !ip.Is4() {
			return n, fmt.Errorf("--nic %q: %q is not an IPv4 address", v, parts[2])
		}
		n.IP = ip.String()
	}
	return n, nil
}

// createFlags are the flags of backup create.
type createFlags struct {
	root, name, memory, platform, arch, guestOS, description, vmUUID, groupName, account, checksum, bandwidth string
	domain, connect, scratch                                                                                  string
	data, nics, nicL3                                                                                         []string
	cpu                                                                                                       int64
	quiet, noWait                                                                                             bool
	indexWait                                                                                                 time.Duration
}

func (a *cli) backupCreateCommand() *cobra.Command {
	var fl createFlags
	cmd := &cobra.Command{
		Use:   "create --storage <storage> (--root <image> [--data <image>]... --name <vm> --cpu <n> --memory <size> [--nic ...]... | --domain <name|uuid> [--nic-l3 <mac|bridge|network>=<l3uuid>[,<ip>]]...)",
		Short: "Take a backup group from disk images (qcow2 or raw) or from a libvirt domain",
		Long: `Take a backup group from disk images: the root disk (--root) and data disks (--data, in device
order), described as the VM they belong to (--name, --cpu, --memory, --nic, --platform).

qemu-img (package qemu-utils) identifies each image: only qcow2 and raw images are taken,
self-contained (no backing file), not encrypted, and not in use by a running VM. Each image
is copied into a new group folder (sparse: holes are not read or written; the checksum is
computed in the same pass), then group.json is written last and atomically: a backup that
is interrupted or killed is never listed as restorable (backup list shows it incomplete;
backup delete removes it). An image that changes during its copy fails the backup.

Or take it from a libvirt domain of this machine (--domain, by name or uuid; --connect, default
qemu:///system): its XML gives the VM (named after the domain), vCPUs, memory, disks and NICs.
Every NIC must be mapped to an L3 network of the source site with --nic-l3, by its MAC or by
the bridge or libvirt network it is plugged into. A shut-off domain's disk files are copied as
they are; a running (or paused) domain keeps running: libvirt's backup job copies each disk as
it was when the job began to a scratch file (next to the disk, or in --scratch), which is then
copied into the group and removed. The domain is left exactly as it was: no snapshot, overlay
or checkpoint is made, and a run after an interrupted one ends what that one left.

When --storage names a catalog storage, create then waits until the workers have indexed
the new group (so a plan or CreateVmFromVmBackup can restore it at once), and says so.`,
		Example: `  restorectl backup create --storage bs-main --root web01.qcow2 --data web01-data.raw \
    --name web01 --cpu 2 --memory 4G --nic d50554f493153be78f6740e18e598046,fa:16:3e:11:22:33,10.10.0.21
  restorectl backup create --storage bs-main --domain web01 --nic-l3 br0=d50554f493153be78f6740e18e598046`,
		Args: args(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			usage := func(format string, v ...any) error { return &usageError{err: fmt.Errorf(format, v...), cmd: cmd} }
			src, err := fl.source(cmd, usage)
			if err != nil {
				return err
			}
			switch {
			case !slices.Contains(clone.Algorithms(), fl.checksum):
				return usage("--checksum %q must be one of %s", fl.checksum, strings.Join(clone.Algorithms(), ", "))
			case fl.account != "" && !zstack.IsUUID(fl.account):
				return usage("--account-uuid %q is not a uuid (32 hex characters)", fl.account)
			}
			var bw int64
			if fl.bandwidth != "" {
				b, err := catalog.ParseBytes(fl.bandwidth)
				if err != nil || b < 1<<20 {
					return usage("--bandwidth %q: bytes per second like 200MB or 1GiB, at least 1MiB", fl.bandwidth)
				}
				bw = int64(b)
			}
			storage, err := a.resolveStorage(storageFlag(cmd))
			if err != nil {
				return err
			}
			return a.backupCreate(cmd, storage, src, backupmaker.Options{
				GroupName: fl.groupName, AccountUUID: fl.account, Checksum: fl.checksum, BandwidthBytesPerSecond: bw,
			}, fl.quiet, !fl.noWait && storage.UUID != "", fl.indexWait)
		},
	}
	f := cmd.Flags()
	f.StringVar(&fl.root, "root", "", "the root disk image (qcow2 or raw)")
	f.StringArrayVar(&fl.data, "data", nil, "a data disk image (repeatable, in device order)")
	f.StringVar(&fl.name, "name", "", "the VM's name")
	f.Int64Var(&fl.cpu, "cpu", 0, "the VM's vCPUs")
	f.StringVar(&fl.memory, "memory", "", "the VM's memory: 4G, 4096M, 4GiB")
	f.StringArrayVar(&fl.nics, "nic", nil, "a NIC: <l3NetworkUuid>[,<mac>[,<ip>]] on the source site (repeatable, in device order)")
	f.StringVar(&fl.domain, "domain", "", "back up this libvirt domain (name or uuid) instead of disk images")
	f.StringVar(&fl.connect, "connect", backupmaker.DefaultURI, "with --domain: the libvirt of this machine (qemu:///system, qemu:///session)")
	f.StringArrayVar(&fl.nicL3, "nic-l3", nil, "with --domain: map a NIC, by MAC or by the bridge or network it is on, to the source site's L3 network: <mac|bridge|network>=<l3NetworkUuid>[,<ip>] (repeatable)")
	f.StringVar(&fl.scratch, "scratch", "", "with --domain, running: the folder for libvirt's backup job files (default: next to each disk); the domain's QEMU must be able to write there")
	f.StringVar(&fl.platform, "platform", "Linux", "the guest platform: "+strings.Join(platforms, ", "))
	f.StringVar(&fl.arch, "architecture", "x86_64", "the guest architecture")
	f.StringVar(&fl.guestOS, "guest-os-type", "", "the guest OS, like \"Ubuntu 22.04\"")
	f.StringVar(&fl.description, "description", "", "the VM's description")
	f.StringVar(&fl.vmUUID, "vm-uuid", "", "the source VM's uuid (plans choosing the newest backup per VM group by it, else by name)")
	f.StringVar(&fl.groupName, "group-name", "", "the group's name (default <name>-<UTC date>-<time>)")
	f.StringVar(&fl.account, "account-uuid", "", "the account that owns the group (default: admin's)")
	f.StringVar(&fl.checksum, "checksum", clone.XXH3Chunked, "checksum algorithm: "+strings.Join(clone.Algorithms(), ", "))
	f.StringVar(&fl.bandwidth, "bandwidth", "", "read at most this many bytes per second from the images or the domain's disks (200MB, 1GiB; default no limit; a running domain's backup job itself is not capped)")
	f.BoolVarP(&fl.quiet, "quiet", "q", false, "print only the new group's uuid on stdout (progress still goes to stderr)")
	f.BoolVar(&fl.noWait, "no-wait", false, "do not wait for the workers to index the new group")
	f.DurationVar(&fl.indexWait, "index-wait", 2*time.Minute, "how long to wait for the workers to index the new group")
	return cmd
}

// source checks the flags that describe what to back up and returns it.
func (fl *createFlags) source(cmd *cobra.Command, usage func(string, ...any) error) (backupmaker.Source, error) {
	if !slices.Contains(platforms, fl.platform) {
		return nil, usage("--platform %q must be one of %s", fl.platform, strings.Join(platforms, ", "))
	}
	if fl.domain != "" {
		return fl.domainSource(cmd, usage)
	}
	for _, only := range []string{"nic-l3", "scratch"} {
		if cmd.Flags().Changed(only) {
			return nil, usage("--%s goes with --domain", only)
		}
	}
	switch {
	case fl.root == "":
		return nil, usage("--root (the root disk image) or --domain (a libvirt domain) is required")
	case fl.name == "":
		return nil, usage("--name (the VM's name) is required")
	case fl.cpu <= 0:
		return nil, usage("--cpu (the VM's vCPUs, at least 1) is required")
	case fl.memory == "":
		return nil, usage("--memory (the VM's memory, like 4G or 4096M) is required")
	case fl.vmUUID != "" && !zstack.IsUUID(fl.vmUUID):
		return nil, usage("--vm-uuid %q is not a uuid (32 hex characters)", fl.vmUUID)
	}
	mem, err := catalog.ParseBytes(fl.memory)
	if err != nil || mem < 1<<20 {
		return nil, usage("--memory %q: a size like 4G, 4096M or 4GiB (binary units), at least 1M", fl.memory)
	}
	vm := backup.SourceVM{UUID: fl.vmUUID, Name: fl.name, Description: fl.description, Platform: fl.platform, GuestOsType: fl.guestOS,
		Architecture: fl.arch, CPUNum: fl.cpu, MemorySize: int64(mem), Nics: []backup.SourceNic{}}
	for i, v := range fl.nics {
		n, err := nicFlag(v, i)
		if err != nil {
			return nil, usage("%v", err)
		}
		vm.Nics = append(vm.Nics, n)
	}
	return &backupmaker.Images{VM: vm, Root: fl.root, Data: fl.data}, nil
}

// domainSource is the source of --domain: what the domain's XML gives may not be given.
func (fl *createFlags) domainSource(cmd *cobra.Command, usage func(string, ...any) error) (backupmaker.Source, error) {
	for _, f := range []string{"root", "data", "name", "cpu", "memory", "nic", "architecture", "description", "vm-uuid"} {
		if cmd.Flags().Changed(f) {
			return nil, usage("--%s does not go with --domain: the domain's XML gives its name, uuid, vCPUs, memory, disks and NICs (map NICs with --nic-l3)", f)
		}
	}
	nics := map[string]backupmaker.NicTarget{}
	for _, v := range fl.nicL3 {
		key, t, err := backupmaker.ParseNicMapping(v)
		if err != nil {
			return nil, usage("--nic-l3 %v", err)
		}
		nics[key] = t
	}
	return &backupmaker.Domain{URI: fl.connect, Name: fl.domain, Nics: nics, Platform: fl.platform, GuestOsType: fl.guestOS, ScratchDir: fl.scratch}, nil
}

func (a *cli) backupCreate(cmd *cobra.Command, storage *storageRef, src backupmaker.Source, opt backupmaker.Options, quiet, waitIndex bool, indexWait time.Duration) error {
	view := a.newFileProgress(a.stderr, 5*time.Second)
	started := time.Now()
	// bars is the number of bars before the disks' (the backup job of a running domain).
	bars := 0
	if dom, ok := src.(*backupmaker.Domain); ok {
		dom.JobProgress = func(done, total int64) {
			if bars == 0 {
				view.add("libvirt backup job of domain "+dom.Name, total)
				bars = 1
			}
			view.update(0, done)
		}
	}
	opt.Started = func(s *backupmaker.Snapshot, groupUUID string) {
		if bars == 1 {
			view.finish(0, true, "consistent copy of the running domain's disks made")
		}
		view.note("backup group %s of VM %s onto %s", groupUUID, s.VM.Name, storage)
		for i, d := range s.Disks {
			size := d.VirtualSize
			if st, err := os.Stat(d.Path); err == nil {
				size = st.Size()
			}
			label := d.Label
			if label == "" {
				label = filepath.Base(d.Path)
			}
			view.add(fmt.Sprintf("disk %d (%s) %s", i, d.Type, label), size)
		}
	}
	opt.Progress = func(i int, p clone.Progress) { view.update(bars+i, p.Done) }
	opt.Copied = func(i int, _ *backup.Volume, res clone.Result) {
		view.finish(bars+i, true, dataNote(res.DataBytes, res.Reflinked))
	}
	g, err := backupmaker.Make(a.ctx, src, storage.Dir, opt)
	view.stop()
	if err != nil && g == nil {
		if a.ctx.Err() != nil {
			return err
		}
		return fmt.Errorf("the backup failed and nothing of it was kept: %w", err)
	}
	took := time.Since(started)
	indexed := ""
	if err == nil && waitIndex {
		indexed = a.waitIndexed(g.GroupUUID, indexWait)
	}
	if quiet {
		fmt.Fprintln(a.stdout, g.GroupUUID)
	} else if perr := a.print(g, func(w io.Writer) error {
		return groupTable(w, storage, backup.Entry{UUID: g.GroupUUID, State: backup.Complete, Group: g}, took)
	}); perr != nil {
		return perr
	}
	if indexed != "" {
		fmt.Fprintln(a.stderr, indexed)
	}
	return err
}

// waitIndexed waits until the api lists the group (the workers indexed it) and returns what
// to tell the user.
func (a *cli) waitIndexed(groupUUID string, limit time.Duration) string {
	c, err := a.client()
	if err != nil {
		return "warning: cannot ask the api whether the workers indexed the group: " + err.Error()
	}
	deadline := time.Now().Add(limit)
	for {
		ok, err := c.GroupIndexed(a.ctx, groupUUID)
		switch {
		case err == nil && ok:
			return "The workers have indexed the group: it can be restored now."
		case a.ctx.Err() != nil:
			return "warning: stopped waiting for the workers to index the group"
		case time.Now().After(deadline):
			why := "the api does not list it yet"
			if err != nil {
				why = err.Error()
			}
			return fmt.Sprintf("warning: the group is complete on the backup storage, but after %s %s. The workers re-index every "+
				"VMRESTORE_BACKUP_SCAN_INTERVAL (30 s by default); if it stays unlisted, check that the workers mount the backup "+
				"storage at the same path (their log and their /readyz name the storages they cannot read).", durationText(limit), why)
		}
		select {
		case <-a.ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// groupTable prints one group: its VM and every volume.
func groupTable(w io.Writer, storage *storageRef, e backup.Entry, took time.Duration) error {
	kv := func(key, format string, v ...any) { fmt.Fprintf(w, "%-13s %s\n", key+":", fmt.Sprintf(format, v...)) }
	kv("Group", "%s", e.UUID)
	kv("State", "%s", stateText(e))
	kv("Storage", "%s", storage)
	g := e.Group
	if g == nil {
		kv("Folder", "%s", backup.GroupDir(storage.Dir, e.UUID))
		kv("Changed", "%s", timeText(&e.ModTime))
		kv("Stored", "%s", bytesText(e.Bytes))
		return nil
	}
	kv("Name", "%s", g.Name)
	kv("Created", "%s", timeText(&g.CreateDate))
	if took > 0 {
		kv("Took", "%s", durationText(took))
	}
	kv("Owner", "%s", dash(g.AccountUUID))
	vm := g.VM
	kv("VM", "%s (uuid %s)", vm.Name, dash(vm.UUID))
	kv("CPU, memory", "%d, %s", vm.CPUNum, bytesText(vm.MemorySize))
	kv("Platform", "%s", strings.TrimSpace(strings.Join([]string{dash(vm.Platform), dash(vm.Architecture), vm.GuestOsType}, " ")))
	for _, n := range vm.Nics {
		kv(fmt.Sprintf("NIC %d", n.DeviceID), "l3 %s  mac %s  ip %s", n.L3NetworkUUID, dash(n.Mac), dash(n.IP))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "VOLUME BACKUP\tTYPE\tDEVICE\tFORMAT\tSIZE\tSTORED\tCHECKSUM\tFILE")
	for _, v := range append([]*backup.Volume{g.Root()}, g.DataVolumes()...) {
		if v == nil {
			continue
		}
		d := v.Digest()
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%s:%s\t%s\n", v.UUID, v.Type, v.DeviceID, v.Format, bytesText(v.Size), bytesText(v.ActualSize),
			d.Algorithm, d.Value, v.File)
	}
	return nil
}

func stateText(e backup.Entry) string {
	switch e.State {
	case backup.Complete:
		return "complete (restorable)"
	case backup.Writing:
		return "writing (a backup create is running)"
	}
	return fmt.Sprintf("%s: %s", e.State, e.Problem)
}

func (a *cli) backupListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list --storage <storage>",
		Short: "List the groups of a backup storage, complete or not, newest first",
		Long: `List every group folder of a backup storage, newest first: complete groups (restorable),
incomplete ones (a backup create was interrupted: delete them), ones being written, and
broken ones (an invalid group.json or a missing volume file), each with its problem.`,
		Args: args(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			storage, err := a.resolveStorage(storageFlag(cmd))
			if err != nil {
				return err
			}
			entries, err := backup.Survey(storage.Dir)
			if err != nil {
				return err
			}
			backup.SortEntries(entries)
			return a.print(entries, func(w io.Writer) error {
				if len(entries) == 0 {
					fmt.Fprintf(w, "No backup group on %s (groups are folders under %s).\n", storage, backup.GroupsDir(storage.Dir))
					return nil
				}
				fmt.Fprintln(w, "GROUP\tNAME\tVM\tVOLUMES\tSIZE\tSTORED\tCREATED\tSTATE")
				var problems []string
				for _, e := range entries {
					name, vm, vols, size, created := "-", "-", "-", "-", timeText(&e.ModTime)
					if g := e.Group; g != nil {
						var total int64
						for _, v := range g.Volumes {
							total += v.Size
						}
						name, vm, vols, size, created = g.Name, g.VM.Name, fmt.Sprint(len(g.Volumes)), bytesText(total), timeText(&g.CreateDate)
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.UUID, name, vm, vols, size, bytesText(e.Bytes), created, e.State)
					if e.Problem != "" && e.State != backup.Writing {
						problems = append(problems, fmt.Sprintf("%s: %s", e.UUID, e.Problem))
					}
				}
				for _, p := range problems {
					fmt.Fprintf(w, "\n%s", p)
				}
				if len(problems) > 0 {
					fmt.Fprintln(w)
				}
				return nil
			})
		},
	}
}

func (a *cli) backupShowCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "show <group uuid> --storage <storage>",
		Short: "Show a group: its VM, NICs and volumes",
		Args:  args(1, "a group uuid"),
		RunE: func(cmd *cobra.Command, args []string) error {
			storage, err := a.resolveStorage(storageFlag(cmd))
			if err != nil {
				return err
			}
			e, err := inspect(storage, args[0])
			if err != nil {
				return err
			}
			return a.print(e, func(w io.Writer) error { return groupTable(w, storage, e, 0) })
		},
	}
}

func inspect(storage *storageRef, uuid string) (backup.Entry, error) {
	e, err := backup.Inspect(storage.Dir, uuid)
	if errors.Is(err, backup.ErrNoFolder) {
		return e, fmt.Errorf("no group %s on %s", uuid, storage)
	}
	return e, err
}

// verifyReport is the result of `backup verify` for one group.
type verifyReport struct {
	GroupUUID string                `json:"groupUuid"`
	Name      string                `json:"name,omitempty"`
	OK        bool                  `json:"ok"`
	Problem   string                `json:"problem,omitempty"`
	Volumes   []backup.VolumeResult `json:"volumes"`
}

func (a *cli) backupVerifyCommand() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "verify (<group uuid>... | --all) --storage <storage>",
		Short: "Re-read every volume file of groups and check their checksums (exit 3 if one is bad)",
		Long: `Re-read every volume file of the given groups (or of every group with --all) and check its
format, virtual size and checksum against group.json. Only data is read (holes cost
nothing). A group that fails, is broken, or has no group.json (given by uuid) is reported
with what is wrong, and the command exits 3; incomplete folders met by --all are listed
as such (backup delete removes them) without failing the run.

Run it on a schedule (cron, a systemd timer, a Kubernetes CronJob): a backup that rotted is
then found before the day it is needed.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) > 0) {
				return &usageError{err: errors.New("give group uuids or --all, not both and not neither"), cmd: cmd}
			}
			storage, err := a.resolveStorage(storageFlag(cmd))
			if err != nil {
				return err
			}
			var entries []backup.Entry
			if all {
				if entries, err = backup.Survey(storage.Dir); err != nil {
					return err
				}
				backup.SortEntries(entries)
			} else {
				for _, u := range args {
					e, err := inspect(storage, u)
					if err != nil {
						return err
					}
					entries = append(entries, e)
				}
			}
			reports, failed := a.verify(storage, entries, all)
			if err := a.print(reports, func(w io.Writer) error { return verifyTable(w, reports) }); err != nil {
				return err
			}
			if a.ctx.Err() != nil {
				return a.ctx.Err()
			}
			if failed > 0 {
				return &exitCode{code: exitVerifyFailed, err: fmt.Errorf("%d of %d groups failed verification", failed, len(reports))}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "verify every group of the storage")
	return cmd
}

// verify checks every complete group of entries; the others are reported as they are.
func (a *cli) verify(storage *storageRef, entries []backup.Entry, all bool) (reports []verifyReport, failed int) {
	view := a.newFileProgress(a.stderr, 5*time.Second)
	defer view.stop()
	n := 0
	for _, e := range entries {
		r := verifyReport{GroupUUID: e.UUID, Volumes: []backup.VolumeResult{}}
		if e.Group != nil {
			r.Name = e.Group.Name
		}
		switch {
		case e.State == backup.Incomplete && all, e.State == backup.Writing && all:
			r.OK, r.Problem = true, "not verified: "+stateText(e)
		case e.State != backup.Complete:
			r.Problem = stateText(e)
		default:
			view.note("group %s (%s)", e.UUID, e.Group.Name)
			r.OK = true
			for _, v := range e.Group.Volumes {
				if a.ctx.Err() != nil {
					break
				}
				i := n
				n++
				view.add(fmt.Sprintf("%s %s", v.Type, v.File), fileSize(backup.GroupDir(storage.Dir, e.UUID), v.File))
				res := backup.VerifyVolume(a.ctx, storage.Dir, e.Group, &v, func(p clone.Progress) { view.update(i, p.Done) })
				note := res.Error
				if res.OK {
					note = dataNote(res.DataBytes, false)
				}
				view.finish(i, res.OK, note)
				r.Volumes = append(r.Volumes, res)
				if !res.OK {
					r.OK = false
				}
			}
		}
		if !r.OK {
			failed++
		}
		reports = append(reports, r)
		if a.ctx.Err() != nil {
			break
		}
	}
	return reports, failed
}

// dataNote says how much data a copy or a verification read (holes are not read).
func dataNote(data int64, reflinked bool) string {
	if reflinked {
		return fmt.Sprintf("%s of data, extents shared with the image (reflink)", bytesText(data))
	}
	return fmt.Sprintf("%s of data", bytesText(data))
}

func fileSize(dir, name string) int64 {
	st, err := os.Stat(filepath.Join(dir, name))
	if err != nil {
		return 0
	}
	return st.Size()
}

func verifyTable(w io.Writer, reports []verifyReport) error {
	if len(reports) == 0 {
		fmt.Fprintln(w, "No backup group to verify.")
		return nil
	}
	fmt.Fprintln(w, "GROUP\tNAME\tVOLUME BACKUP\tREAD\tRESULT")
	for _, r := range reports {
		if len(r.Volumes) == 0 {
			result := "ok"
			if r.Problem != "" {
				result = r.Problem
			}
			if !r.OK {
				result = "FAILED: " + result
			}
			fmt.Fprintf(w, "%s\t%s\t-\t-\t%s\n", r.GroupUUID, dash(r.Name), oneLine(result))
			continue
		}
		for _, v := range r.Volumes {
			result := "ok"
			if !v.OK {
				result = "FAILED: " + v.Error
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", r.GroupUUID, dash(r.Name), v.UUID, bytesText(v.DataBytes), oneLine(result))
		}
	}
	return nil
}

func (a *cli) backupDeleteCommand() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "delete <group uuid> --storage <storage> [--yes]",
		Short: "Delete a group's folder (group.json first, so it stops being restorable at once)",
		Long: `Delete a group's folder from the backup storage: group.json first (from that moment no new
restore can use the group; restores already copying keep their open files), then its volume
files. Incomplete and broken folders are deleted the same way. A folder a backup create is
still writing is refused. It asks for confirmation on a terminal; otherwise --yes is required.`,
		Args: args(1, "a group uuid"),
		RunE: func(cmd *cobra.Command, args []string) error {
			storage, err := a.resolveStorage(storageFlag(cmd))
			if err != nil {
				return err
			}
			e, err := inspect(storage, args[0])
			if err != nil {
				return err
			}
			what := fmt.Sprintf("group %s (%s, %s)", e.UUID, stateText(e), bytesText(e.Bytes))
			if e.Group != nil {
				what = fmt.Sprintf("group %s (%s, VM %s, %d volumes, %s)", e.UUID, e.Group.Name, e.Group.VM.Name, len(e.Group.Volumes), bytesText(e.Bytes))
			}
			if !yes {
				if !isTerminal(a.stdin) {
					return &usageError{err: fmt.Errorf("deleting %s needs --yes (stdin is not a terminal to ask)", what), cmd: cmd}
				}
				fmt.Fprintf(a.stderr, "Delete %s from %s? [y/N] ", what, storage)
				line, _ := bufio.NewReader(a.stdin).ReadString('\n')
				if ans := strings.ToLower(strings.TrimSpace(line)); ans != "y" && ans != "yes" {
					return &exitCode{code: exitError, err: errors.New("not deleted")}
				}
			}
			if err := backup.Delete(storage.Dir, e.UUID); err != nil {
				return err
			}
			return a.print(map[string]any{"deleted": e.UUID}, func(w io.Writer) error {
				fmt.Fprintf(w, "Deleted %s from %s.\n", what, storage)
				return nil
			})
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "delete without asking")
	return cmd
}
