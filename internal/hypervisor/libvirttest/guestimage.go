package libvirttest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/testenv"
)

// GuestReady is what the test guest prints on its serial console once its init runs from
// the disk it booted; a console boot check waits for it.
const GuestReady = "vmrestore-testguest: booted from the restored disk"

// GuestImage is a small bootable disk built from Debian packages: SYSLINUX on a FAT file
// system holding Debian's cloud kernel and a busybox initramfs. BIOS → SYSLINUX → kernel →
// init all read the disk, so a guest that prints GuestReady proves the restored file is what
// booted. Broken is the same disk with its initramfs cut in half (as a damaged backup would
// be): the kernel panics and never prints GuestReady.
type GuestImage struct {
	Good, Broken string // qcow2 files
	Kernel       string // the kernel package it was built from
}

// guestRecipe changes whenever the way the image is built changes; it is part of the cache
// key with the package versions.
const guestRecipe = `v4
init: mount proc, sys, dev; load virtio modules; print GuestReady; answer the guest agent
syslinux: console=ttyS0 quiet panic=-1
broken: initrd.gz truncated to half`

// initScript runs as PID 1. Besides printing GuestReady it answers the QEMU guest agent's
// guest-sync and guest-ping on the virtio-serial port org.qemu.guest_agent.0, enough for a
// guestAgent boot check.
const initScript = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in ` + modulesInOrder + `; do
  insmod /lib/modules/$m.ko 2>/dev/null
done
echo "` + GuestReady + ` $(cat /etc/image-id)" > /dev/console
agent() {
  for i in $(seq 1 50); do
    for p in /sys/class/virtio-ports/*; do
      [ "$(cat $p/name 2>/dev/null)" = org.qemu.guest_agent.0 ] && port=/dev/$(basename $p)
    done
    [ -n "$port" ] && [ -e "$port" ] && break
    sleep 0.2
  done
  [ -n "$port" ] || return
  while :; do
    exec 3<>"$port"
    while IFS= read -r line <&3; do
      case "$line" in
        *guest-sync*) id=$(echo "$line" | sed -n 's/.*"id"[^0-9]*\([0-9][0-9]*\).*/\1/p'); echo "{\"return\": $id}" >&3 ;;
        *guest-ping*) echo '{"return": {}}' >&3 ;;
        *execute*) echo '{"error": {"class": "CommandNotFound", "desc": "the test guest answers guest-sync and guest-ping only"}}' >&3 ;;
      esac
    done
    exec 3<&-
    sleep 0.2
  done
}
agent &
while :; do sleep 3600; done
`

const syslinuxCfg = `DEFAULT guest
PROMPT 0
TIMEOUT 0
LABEL guest
  KERNEL vmlinuz
  APPEND initrd=initrd.gz console=ttyS0 quiet panic=-1
`

// guestModules are the kernel modules the init loads (the cloud kernel builds virtio as
// modules), in dependency order.
var guestModules = strings.Fields(modulesInOrder)

const modulesInOrder = "virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_console"

// CacheDir is where built guest images are kept between runs: VMRESTORE_TEST_CACHE, or the
// user cache directory.
func CacheDir() string {
	if d := os.Getenv("VMRESTORE_TEST_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "vmrestore-test")
	}
	return filepath.Join(os.TempDir(), "vmrestore-test")
}

// BuildGuestImage returns the test guest image, building it on first use (about 30 s: it
// downloads Debian's cloud kernel and busybox-static with apt-get download). Images are
// cached under CacheDir by a key of the recipe and the package versions.
func BuildGuestImage(t testing.TB) *GuestImage {
	t.Helper()
	for _, tool := range []struct{ name, hint string }{
		{"apt-get", "the test guest is built from Debian packages"}, {"apt-cache", "the test guest is built from Debian packages"},
		{"dpkg-deb", "install dpkg"}, {"mkfs.fat", "install dosfstools"}, {"mcopy", "install mtools"},
		{"syslinux", "install syslinux"}, {"qemu-img", "install qemu-utils"},
	} {
		testenv.LookPath(t, tool.name, tool.hint)
	}
	pk, err := guestPackages()
	if err != nil {
		testenv.Missing(t, "cannot resolve the test guest's Debian packages (run apt-get update): %v", err)
	}
	kernelPkg, kv, bv := pk.Kernel, pk.KernelVersion, pk.BusyboxVersion
	sum := sha256.Sum256([]byte(strings.Join([]string{guestRecipe, initScript, syslinuxCfg, kernelPkg, kv, bv}, "\x00")))
	key := hex.EncodeToString(sum[:8])
	dir := filepath.Join(CacheDir(), "guest-"+key)
	img := &GuestImage{Good: filepath.Join(dir, "good.qcow2"), Broken: filepath.Join(dir, "broken.qcow2"), Kernel: kernelPkg + " " + kv}
	if _, err := os.Stat(img.Broken); err == nil {
		return img
	}

	// One builder at a time across test packages.
	if err := os.MkdirAll(CacheDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	lf, err := os.OpenFile(filepath.Join(CacheDir(), "build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	defer unix.Flock(int(lf.Fd()), unix.LOCK_UN)
	if _, err := os.Stat(img.Broken); err == nil {
		return img
	}
	fmt.Fprintf(os.Stderr, "building the test guest image from %s and busybox-static %s into %s\n", img.Kernel, bv, dir)
	tmp, err := os.MkdirTemp(CacheDir(), "build-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	if err := build(tmp, kernelPkg, key); err != nil {
		t.Fatalf("build the test guest image: %v", err)
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
	// The directories on the way must be traversable by the qemu user libvirt runs guests as.
	_ = os.Chmod(dir, 0o755)
	return img
}

func run(dir string, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out, nil
}

// packages are the Debian packages the test guest is built from, as apt resolves them.
type packages struct {
	Kernel, KernelVersion, BusyboxVersion string
}

// guestPackages resolves the guest's packages. apt-cache takes seconds per call on a
// machine without apt's binary cache, and every guest test asks, so the answer is kept in
// CacheDir keyed by the package lists it came from (a new apt-get update resolves afresh).
func guestPackages() (packages, error) {
	var pk packages
	stamp, err := aptListsStamp()
	if err != nil {
		return pk, err
	}
	saved := filepath.Join(CacheDir(), "packages-"+stamp+".json")
	if b, err := os.ReadFile(saved); err == nil && json.Unmarshal(b, &pk) == nil && pk.BusyboxVersion != "" {
		return pk, nil
	}
	if pk.Kernel, err = dependency("linux-image-cloud-amd64", "linux-image-"); err != nil {
		return pk, err
	}
	if pk.KernelVersion, err = version(pk.Kernel); err != nil {
		return pk, err
	}
	if pk.BusyboxVersion, err = version("busybox-static"); err != nil {
		return pk, err
	}
	if b, err := json.Marshal(pk); err == nil && os.MkdirAll(CacheDir(), 0o755) == nil {
		tmp := saved + ".tmp-" + rand.Text()
		if os.WriteFile(tmp, b, 0o644) == nil {
			_ = os.Rename(tmp, saved)
		}
	}
	return pk, nil
}

// aptListsStamp names the state of apt's package lists: their names, sizes and times.
func aptListsStamp() (string, error) {
	const lists = "/var/lib/apt/lists"
	entries, err := os.ReadDir(lists)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		fmt.Fprintf(h, "%s %d %d\n", e.Name(), info.Size(), info.ModTime().UnixNano())
	}
	return hex.EncodeToString(h.Sum(nil)[:8]), nil
}

// dependency resolves a meta package to the package it depends on whose name has prefix.
func dependency(meta, prefix string) (string, error) {
	out, err := run("", "apt-cache", "depends", meta)
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(out), "\n") {
		if dep, ok := strings.CutPrefix(strings.TrimSpace(l), "Depends: "); ok && strings.HasPrefix(dep, prefix) {
			return dep, nil
		}
	}
	return "", fmt.Errorf("%s depends on no %s* package", meta, prefix)
}

func version(pkg string) (string, error) {
	out, err := run("", "apt-cache", "show", "--no-all-versions", pkg)
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "Version: "); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("no version for %s", pkg)
}

// extract copies the files of a .deb whose paths pass keep into dst, flat, by base name.
func extract(dir, deb string, keep func(name string) bool, dst string) error {
	cmd := exec.Command("dpkg-deb", "--fsys-tarfile", deb)
	cmd.Dir = dir
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	tr := tar.NewReader(out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return fmt.Errorf("read %s: %w", deb, err)
		}
		if h.Typeflag != tar.TypeReg || !keep(h.Name) {
			continue
		}
		f, err := os.OpenFile(filepath.Join(dst, filepath.Base(h.Name)), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, tr); err != nil {
			f.Close()
			return err
		}
		f.Close()
	}
	return cmd.Wait()
}

func build(dir, kernelPkg, imageID string) error {
	if _, err := run(dir, "apt-get", "download", "-q", kernelPkg, "busybox-static"); err != nil {
		return err
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "*.deb"))
	var kernelDeb, busyboxDeb string
	for _, d := range debs {
		switch {
		case strings.HasPrefix(filepath.Base(d), kernelPkg+"_"):
			kernelDeb = d
		case strings.HasPrefix(filepath.Base(d), "busybox-static_"):
			busyboxDeb = d
		}
	}
	if kernelDeb == "" || busyboxDeb == "" {
		return fmt.Errorf("apt-get download left %v", debs)
	}
	files := filepath.Join(dir, "files")
	root := filepath.Join(dir, "root")
	for _, d := range []string{files, root + "/bin", root + "/lib/modules", root + "/etc", root + "/proc", root + "/sys", root + "/dev"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	wanted := map[string]bool{}
	for _, m := range guestModules {
		wanted[m+".ko"] = true
	}
	if err := extract(dir, kernelDeb, func(n string) bool {
		return strings.HasPrefix(n, "./boot/vmlinuz-") || strings.Contains(n, "/kernel/drivers/") && wanted[filepath.Base(n)]
	}, files); err != nil {
		return err
	}
	if err := extract(dir, busyboxDeb, func(n string) bool { return n == "./bin/busybox" }, filepath.Join(root, "bin")); err != nil {
		return err
	}
	kernels, _ := filepath.Glob(filepath.Join(files, "vmlinuz-*"))
	if len(kernels) != 1 {
		return fmt.Errorf("the kernel package holds %d kernels", len(kernels))
	}
	for m := range wanted {
		if err := os.Rename(filepath.Join(files, m), filepath.Join(root, "lib/modules", m)); err != nil {
			return fmt.Errorf("module %s: %w", m, err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "init"), []byte(initScript), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "etc/image-id"), []byte(imageID+"\n"), 0o644); err != nil {
		return err
	}

	// The initramfs: a newc cpio archive (busybox's cpio), gzip-compressed.
	list, err := run(root, "find", ".")
	if err != nil {
		return err
	}
	cpio := exec.Command(filepath.Join(root, "bin/busybox"), "cpio", "-o", "-H", "newc")
	cpio.Dir = root
	cpio.Stdin = bytes.NewReader(list)
	archive, err := cpio.Output()
	if err != nil {
		return fmt.Errorf("cpio: %w", err)
	}
	var initrd bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&initrd, gzip.BestCompression)
	zw.Write(archive)
	zw.Close()
	if err := os.WriteFile(filepath.Join(files, "initrd.gz"), initrd.Bytes(), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(files, "initrd-broken.gz"), initrd.Bytes()[:initrd.Len()/2], 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(files, "syslinux.cfg"), []byte(syslinuxCfg), 0o644); err != nil {
		return err
	}

	for _, v := range []struct{ name, initrd string }{{"good", "initrd.gz"}, {"broken", "initrd-broken.gz"}} {
		raw := filepath.Join(dir, v.name+".img")
		if _, err := run(dir, "mkfs.fat", "-C", raw, "40960"); err != nil { // 40 MiB
			return err
		}
		for _, c := range [][]string{
			{"-i", raw, kernels[0], "::vmlinuz"}, {"-i", raw, filepath.Join(files, v.initrd), "::initrd.gz"},
			{"-i", raw, filepath.Join(files, "syslinux.cfg"), "::syslinux.cfg"},
		} {
			if _, err := run(dir, "mcopy", c...); err != nil {
				return err
			}
		}
		if _, err := run(dir, "syslinux", "--install", raw); err != nil {
			return err
		}
		if _, err := run(dir, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, filepath.Join(dir, v.name+".qcow2")); err != nil {
			return err
		}
		os.Remove(raw)
	}
	for _, junk := range []string{files, root} {
		os.RemoveAll(junk)
	}
	for _, d := range debs {
		os.Remove(d)
	}
	return nil
}

// WriteGroup puts a disk image into a backup storage as a VM backup group whose only volume
// is the root volume, and returns the group's uuid. The source VM is a 96 MiB, one-vCPU
// Linux guest with one NIC on l3.
func WriteGroup(t testing.TB, backupStorage, name, image, l3 string) string {
	t.Helper()
	return writeGroup(t, backupStorage, name, image, "qcow2", l3)
}

// WriteRawGroup is WriteGroup with the image converted to a raw volume backup (whose every
// byte, holes too, a block pull reads: a pull long enough to interrupt).
func WriteRawGroup(t testing.TB, backupStorage, name, image, l3 string) string {
	t.Helper()
	raw := filepath.Join(t.TempDir(), "image.raw")
	if out, err := run("", "qemu-img", "convert", "-O", "raw", image, raw); err != nil {
		t.Fatalf("qemu-img convert: %v: %s", err, out)
	}
	return writeGroup(t, backupStorage, name, raw, "raw", l3)
}

func writeGroup(t testing.TB, backupStorage, name, image, format, l3 string) string {
	t.Helper()
	group := newUUID()
	dir := filepath.Join(backupStorage, "vm-backups", group)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	volume := newUUID()
	file := volume + "." + format
	data, err := os.ReadFile(image)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, file), data, 0o644); err != nil {
		t.Fatal(err)
	}
	info, err := run("", "qemu-img", "info", "--output=json", image)
	if err != nil {
		t.Fatal(err)
	}
	var qi struct {
		VirtualSize int64 `json:"virtual-size"`
	}
	if err := json.Unmarshal(info, &qi); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	g := backup.Group{
		GroupUUID: group, Name: name, CreateDate: time.Now().UTC().Truncate(time.Second),
		VM: backup.SourceVM{UUID: newUUID(), Name: name, Platform: "Linux", GuestOsType: "Debian 12", Architecture: "x86_64",
			CPUNum: 1, MemorySize: 96 << 20, Nics: []backup.SourceNic{{L3NetworkUUID: l3, DeviceID: 0, DriverType: "virtio"}}},
		Volumes: []backup.Volume{{UUID: volume, VolumeUUID: newUUID(), Type: backup.VolumeRoot, DeviceID: 0, Format: format,
			Size: qi.VirtualSize, ActualSize: int64(len(data)), File: file, SHA256: hex.EncodeToString(sum[:])}},
	}
	b, _ := json.MarshalIndent(g, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "group.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return group
}

// AddDataVolume adds a raw data volume of size bytes of random data (its holes none) to the
// group, as device 1, and returns the volume backup's uuid.
func AddDataVolume(t testing.TB, backupStorage, group string, size int64) string {
	t.Helper()
	dir := filepath.Join(backupStorage, "vm-backups", group)
	b, err := os.ReadFile(filepath.Join(dir, "group.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g backup.Group
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, size)
	_, _ = rand.Read(data)
	volume := newUUID()
	file := volume + ".raw"
	if err := os.WriteFile(filepath.Join(dir, file), data, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	g.Volumes = append(g.Volumes, backup.Volume{UUID: volume, VolumeUUID: newUUID(), Type: backup.VolumeData, DeviceID: 1, Format: "raw",
		Size: size, ActualSize: size, File: file, SHA256: hex.EncodeToString(sum[:])})
	if b, err = json.MarshalIndent(g, "", "  "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "group.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return volume
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
