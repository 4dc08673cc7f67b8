// Package overlay makes the qcow2 overlays of an instant restore: a small file on the
// primary storage, beside the volume's file, whose backing file is the volume's backup, so
// that a VM can run at once from the backup while its data is copied into the volume's file.
// It also reads an image's
// backing file back (qemu-img, sharing the image with the running VM), and tells whether a
// backup file is still the one the overlay was made over (its identity).
package overlay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// QemuImg is the qemu-img command.
var QemuImg = "qemu-img"

// commandTimeout bounds one qemu-img run (it writes or reads only metadata).
const commandTimeout = time.Minute

// ErrNoQemuImg is returned when qemu-img is not installed.
var ErrNoQemuImg = errors.New("qemu-img is not installed: instant restores make qcow2 overlays with it " +
	"(Debian/Ubuntu: apt-get install qemu-utils; RHEL/Rocky/Fedora: dnf install qemu-img)")

// Suffix names an instant restore's overlay after the volume's file it stands in for: the VM
// runs from <file>.overlay over the backup while the data is copied into <file>, then from
// <file> alone, and the overlay is removed.
const Suffix = ".overlay"

// PathOf is the overlay that stands in for the volume file path.
func PathOf(path string) string { return path + Suffix }

// TempSuffix names the file an overlay is written to before it is renamed into place; a
// crash between the two leaves it, for the volume's removal to take.
const TempSuffix = ".overlay-tmp"

// Create makes path a qcow2 overlay over backing (an absolute path, of format raw or
// qcow2), atomically: it is written beside path and renamed into place, so a crash leaves
// either no overlay or a whole one. An existing file at path is replaced.
func Create(ctx context.Context, path, backing, backingFormat string) error {
	if !filepath.IsAbs(backing) {
		return fmt.Errorf("the backing file %q of an overlay must be an absolute path", backing)
	}
	if backingFormat != "raw" && backingFormat != "qcow2" {
		return fmt.Errorf("backing format %q must be raw or qcow2", backingFormat)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + TempSuffix
	_ = os.Remove(tmp)
	if _, err := run(ctx, "create", "-q", "-f", "qcow2", "-F", backingFormat, "-b", backing, "--", tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// Backing returns the backing file an image names in its header ("" when it has none). It
// shares the image with a VM that runs it (qemu-img -U).
func Backing(ctx context.Context, path string) (string, error) {
	out, err := run(ctx, "info", "-U", "--output=json", "--", path)
	if err != nil {
		return "", err
	}
	var info struct {
		BackingFilename string `json:"backing-filename"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return "", fmt.Errorf("qemu-img info %s answered something that is not its JSON: %v", path, err)
	}
	return info.BackingFilename, nil
}

func run(ctx context.Context, args ...string) ([]byte, error) {
	bin, err := exec.LookPath(QemuImg)
	if err != nil {
		return nil, ErrNoQemuImg
	}
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.Join(strings.Fields(strings.ReplaceAll(stderr.String(), "qemu-img: ", "")), " ")
		if ctx.Err() != nil {
			msg = fmt.Sprintf("no answer within %s", commandTimeout)
		}
		return nil, fmt.Errorf("qemu-img %s: %v: %s", args[0], err, msg)
	}
	return stdout.Bytes(), nil
}

// Identity tells one file from another, or from itself changed: its length, modification
// and change times, inode and device. A backup file that is rewritten, truncated, replaced
// or touched gets another identity.
type Identity struct {
	Size    int64  `json:"size"`
	MtimeNs int64  `json:"mtimeNs"`
	CtimeNs int64  `json:"ctimeNs"`
	Inode   uint64 `json:"inode"`
	Device  uint64 `json:"device"`
}

// IdentityOf reads a file's identity.
func IdentityOf(path string) (Identity, error) {
	st, err := os.Stat(path)
	if err != nil {
		return Identity{}, err
	}
	return identity(st), nil
}

func identity(st os.FileInfo) Identity {
	id := Identity{Size: st.Size(), MtimeNs: st.ModTime().UnixNano()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		id.CtimeNs = sys.Ctim.Sec*1e9 + sys.Ctim.Nsec
		id.Inode, id.Device = sys.Ino, sys.Dev
	}
	return id
}

// Diff names what differs between two identities ("" when none does).
func (a Identity) Diff(b Identity) string {
	var d []string
	if a.Size != b.Size {
		d = append(d, fmt.Sprintf("size %d → %d bytes", a.Size, b.Size))
	}
	if a.MtimeNs != b.MtimeNs {
		d = append(d, fmt.Sprintf("mtime %s → %s", time.Unix(0, a.MtimeNs).UTC().Format(time.RFC3339Nano), time.Unix(0, b.MtimeNs).UTC().Format(time.RFC3339Nano)))
	}
	if a.CtimeNs != b.CtimeNs {
		d = append(d, fmt.Sprintf("ctime %s → %s", time.Unix(0, a.CtimeNs).UTC().Format(time.RFC3339Nano), time.Unix(0, b.CtimeNs).UTC().Format(time.RFC3339Nano)))
	}
	if a.Inode != b.Inode || a.Device != b.Device {
		d = append(d, fmt.Sprintf("inode %d:%d → %d:%d", a.Device, a.Inode, b.Device, b.Inode))
	}
	return strings.Join(d, ", ")
}

// IdentityOfFile reads the identity of an open file.
func IdentityOfFile(f *os.File) (Identity, error) {
	st, err := f.Stat()
	if err != nil {
		return Identity{}, err
	}
	return identity(st), nil
}
