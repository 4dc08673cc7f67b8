// Package diskimage identifies a disk image file before it is backed up: its format (qcow2
// or raw, the two a backup group holds), its virtual size, and whether it can be backed up
// alone.
//
// It asks `qemu-img info --output=json`, the authority on image formats, rather than reading
// headers itself: qemu-img recognises every format QEMU knows (so a VMDK or VHDX file is
// refused by name instead of being copied as if it were raw), reports backing files,
// encryption and the qcow2 corrupt flag, and takes QEMU's image lock, so a qcow2 image a
// running VM is writing is refused ("Failed to get shared "write" lock"). qemu-img opens the
// image without its backing chain and without reading guest data.
package diskimage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Info describes a disk image that can be backed up.
type Info struct {
	Path        string
	Format      string // "qcow2" or "raw"
	VirtualSize int64  // bytes the guest sees
	FileSize    int64  // apparent length of the file
	ActualSize  int64  // bytes allocated on disk
}

// ErrNoQemuImg is returned when qemu-img is not installed.
var ErrNoQemuImg = errors.New("qemu-img is not installed: backups from disk images need it to identify the images " +
	"(Debian/Ubuntu: apt-get install qemu-utils; RHEL/Rocky/Fedora: dnf install qemu-img)")

// ProbeTimeout bounds one qemu-img run (it reads only headers and metadata).
const ProbeTimeout = time.Minute

// QemuImg is the qemu-img command; tests may point it elsewhere.
var QemuImg = "qemu-img"

// qemuInfo is the part of qemu-img's JSON answer that matters here.
type qemuInfo struct {
	Format          string `json:"format"`
	VirtualSize     int64  `json:"virtual-size"`
	ActualSize      int64  `json:"actual-size"`
	BackingFilename string `json:"backing-filename"`
	Encrypted       bool   `json:"encrypted"`
	DirtyFlag       bool   `json:"dirty-flag"`
	FormatSpecific  *struct {
		Type string `json:"type"`
		Data struct {
			Corrupt *bool `json:"corrupt"`
		} `json:"data"`
	} `json:"format-specific"`
}

// Probe identifies the image at path. The error says what is wrong and what to do.
func Probe(ctx context.Context, path string) (*Info, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (block devices and folders cannot be backed up as disk images)", path)
	}
	bin, err := exec.LookPath(QemuImg)
	if err != nil {
		return nil, ErrNoQemuImg
	}
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	// "--" ends the options: a file name starting with "-" stays a file name.
	cmd := exec.CommandContext(ctx, bin, "info", "--output=json", "--", path)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		switch {
		case ctx.Err() != nil:
			return nil, fmt.Errorf("qemu-img info %s did not answer within %s", path, ProbeTimeout)
		case strings.Contains(msg, "Failed to get") && strings.Contains(msg, "lock"):
			return nil, fmt.Errorf("%s is in use by a running VM (%s): shut the VM down first, or back up its libvirt domain, which copies a consistent point in time", path, oneLine(msg))
		case msg != "":
			return nil, fmt.Errorf("qemu-img cannot read %s: %s", path, oneLine(msg))
		}
		return nil, fmt.Errorf("qemu-img info %s: %w", path, err)
	}
	info, err := parse(stdout.Bytes())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	info.Path, info.FileSize = path, st.Size()
	if info.Format == "raw" && info.VirtualSize != st.Size() {
		return nil, fmt.Errorf("%s: qemu-img reports a virtual size of %d bytes for a raw file of %d", path, info.VirtualSize, st.Size())
	}
	return info, nil
}

// parse reads qemu-img's JSON and refuses what a backup group cannot hold.
func parse(data []byte) (*Info, error) {
	var q qemuInfo
	if err := json.Unmarshal(data, &q); err != nil {
		return nil, fmt.Errorf("qemu-img info answered something that is not its JSON: %v", err)
	}
	switch {
	case q.Format != "qcow2" && q.Format != "raw":
		return nil, fmt.Errorf("the image is %s, and a backup holds qcow2 or raw images: convert it first (qemu-img convert -O qcow2 <image> <image>.qcow2)", q.Format)
	case q.BackingFilename != "":
		return nil, fmt.Errorf("the image has a backing file (%s) and would not restore alone: back up a self-contained copy (qemu-img convert -O qcow2 <image> <copy>.qcow2)", q.BackingFilename)
	case q.Encrypted:
		return nil, errors.New("the image is encrypted, which restores cannot open: back up a decrypted copy")
	case q.FormatSpecific != nil && q.FormatSpecific.Data.Corrupt != nil && *q.FormatSpecific.Data.Corrupt:
		return nil, errors.New("qemu-img marks the qcow2 image corrupt: repair it (qemu-img check -r all) before backing it up")
	case q.DirtyFlag:
		return nil, errors.New("the image is marked dirty (it was not closed cleanly): run qemu-img check -r leaks on it first")
	case q.VirtualSize <= 0:
		return nil, fmt.Errorf("qemu-img reports a virtual size of %d bytes", q.VirtualSize)
	}
	return &Info{Format: q.Format, VirtualSize: q.VirtualSize, ActualSize: q.ActualSize}, nil
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "qemu-img: ", "")
	return strings.Join(strings.Fields(s), " ")
}
