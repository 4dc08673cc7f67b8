package clone_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmrestore/vmrestore/internal/clone"
)

// interrupted copies src to dst with checkpoints every `every` bytes and cancels the copy
// after `after` checkpoints; it returns the last checkpoint.
func interrupted(tb testing.TB, src, dst, algorithm, digest string, every int64, after int) *clone.Checkpoint {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var last *clone.Checkpoint
	n := 0
	_, err := clone.Copy(ctx, open(tb, src), dst, clone.Options{
		Digest: clone.Digest{Algorithm: algorithm, Value: digest}, Format: "raw", NoReflink: true,
		CheckpointEvery: every,
		Checkpoint: func(cp clone.Checkpoint) error {
			last = &cp
			if n++; n == after {
				cancel()
			}
			return nil
		},
	})
	if !errors.Is(err, context.Canceled) {
		tb.Fatalf("the interrupted copy ended with %v", err)
	}
	if last == nil {
		tb.Fatal("no checkpoint was recorded")
	}
	return last
}

// A copy stopped after a few checkpoints keeps its partial files; a copy given the last
// checkpoint verifies them, reads only what is left, and ends with exactly the source bytes
// and the whole file's checksum proven, for every digest. Bytes written after the checkpoint
// (the stopped copy went on a little) are dropped, even where the source has a hole.
func TestCopyResumesFromItsCheckpoint(t *testing.T) {
	srcDir := t.TempDir()
	src := volume{"r", "raw", 64 << 20, 256}.write(t, srcDir) // 16 MiB of data every 256 KiB
	for _, alg := range clone.Algorithms() {
		t.Run(alg, func(t *testing.T) {
			outDir := t.TempDir()
			dst := filepath.Join(outDir, "vol-r", "r.raw")
			digest := sum(t, src, alg)
			cp := interrupted(t, src, dst, alg, digest, 2<<20, 3)
			if cp.Offset < 6<<20 || cp.Offset%clone.DigestChunk != 0 || cp.Data == 0 {
				t.Fatalf("checkpoint %+v", cp)
			}
			want := []string{dst + clone.PartSuffix}
			if alg == clone.XXH3Chunked || alg == clone.BLAKE3Chunked {
				want = append(want, dst+clone.SumsSuffix)
			}
			if left := leftovers(t, outDir); !slices.Equal(left, want) {
				t.Fatalf("after the stop: %v, want %v", left, want)
			}
			// A checkpoint goes through JSON (the job record) on its way to the next run.
			b, _ := json.Marshal(cp)
			var again clone.Checkpoint
			if err := json.Unmarshal(b, &again); err != nil {
				t.Fatal(err)
			}
			// Stale bytes past the checkpoint, in a hole of the source.
			part, err := os.OpenFile(dst+clone.PartSuffix, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			hole := (cp.Offset/(256<<10)+1)*(256<<10) + 64<<10
			part.WriteAt([]byte("stale bytes past the checkpoint"), hole)
			part.Close()

			var first clone.Progress
			res, err := clone.Copy(context.Background(), open(t, src), dst, clone.Options{
				Digest: clone.Digest{Algorithm: alg, Value: digest}, Format: "raw", NoReflink: true,
				CheckpointEvery: 2 << 20, Checkpoint: func(clone.Checkpoint) error { return nil }, Resume: &again,
				Progress: func(p clone.Progress) {
					if first.Total == 0 {
						first = p
					}
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.ResumedAt != cp.Offset || res.ResumeRefused != "" {
				t.Fatalf("resumed at %d (refused: %q), the checkpoint is at %d", res.ResumedAt, res.ResumeRefused, cp.Offset)
			}
			if res.DataBytes != 16<<20-cp.Data {
				t.Fatalf("the resumed copy read %d bytes; %d were left after the checkpoint", res.DataBytes, 16<<20-cp.Data)
			}
			if first.Data < cp.Data || first.Read > first.Data-cp.Data {
				t.Fatalf("progress of the resumed copy starts at %+v, the checkpoint had %d bytes of data", first, cp.Data)
			}
			sameBytes(t, src, dst)
			if left := leftovers(t, outDir); !slices.Equal(left, []string{dst}) {
				t.Fatalf("after the resumed copy: %v, want only %s", left, dst)
			}
		})
	}
}

// A checkpoint that does not fit what is on disk is refused, with its reason, and the copy
// starts over and still ends with the source bytes.
func TestCopyRefusesAStaleCheckpoint(t *testing.T) {
	srcDir := t.TempDir()
	cases := []struct {
		name string
		alg  string
		edit func(t *testing.T, src, dst string, cp *clone.Checkpoint)
	}{
		{"the backup file changed", clone.XXH3Chunked, func(t *testing.T, src, _ string, _ *clone.Checkpoint) {
			later := time.Now().Add(time.Hour)
			os.Chtimes(src, later, later)
		}},
		{"the partial file was damaged before the checkpoint", clone.XXH3Chunked, func(t *testing.T, _, dst string, cp *clone.Checkpoint) {
			f, _ := os.OpenFile(dst+clone.PartSuffix, os.O_RDWR, 0)
			f.WriteAt([]byte{0xff, 0xfe}, cp.Offset-(256<<10)) // a data block of the source
			f.Close()
		}},
		{"the partial file was damaged before the checkpoint, sha256", clone.SHA256, func(t *testing.T, _, dst string, cp *clone.Checkpoint) {
			f, _ := os.OpenFile(dst+clone.PartSuffix, os.O_RDWR, 0)
			f.WriteAt([]byte{0xff, 0xfe}, cp.Offset-(256<<10))
			f.Close()
		}},
		{"the per-chunk digests are cut short", clone.BLAKE3Chunked, func(t *testing.T, _, dst string, cp *clone.Checkpoint) {
			os.Truncate(dst+clone.SumsSuffix, cp.Sums-1)
		}},
		{"the partial file is gone", clone.SHA256, func(t *testing.T, _, dst string, _ *clone.Checkpoint) {
			os.Remove(dst + clone.PartSuffix)
		}},
		{"another checksum", clone.XXH3Chunked, func(t *testing.T, _, _ string, cp *clone.Checkpoint) {
			cp.Digest = "00" + cp.Digest[2:]
		}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := volume{"s" + string(rune('a'+i)), "raw", 32 << 20, 128}.write(t, srcDir)
			outDir := t.TempDir()
			dst := filepath.Join(outDir, "vol", "s.raw")
			digest := sum(t, src, c.alg)
			cp := interrupted(t, src, dst, c.alg, digest, 2<<20, 2)
			c.edit(t, src, dst, cp)
			res, err := clone.Copy(context.Background(), open(t, src), dst, clone.Options{
				Digest: clone.Digest{Algorithm: c.alg, Value: digest}, Format: "raw", NoReflink: true,
				CheckpointEvery: 2 << 20, Checkpoint: func(clone.Checkpoint) error { return nil }, Resume: cp,
			})
			if err != nil {
				t.Fatalf("%v (resumed at %d, checkpoint %+v)", err, res.ResumedAt, cp)
			}
			if res.ResumedAt != 0 || res.ResumeRefused == "" {
				t.Fatalf("resumed at %d, refused %q: the checkpoint should have been refused", res.ResumedAt, res.ResumeRefused)
			}
			t.Logf("refused: %s", res.ResumeRefused)
			sameBytes(t, src, dst)
			if left := leftovers(t, outDir); !slices.Equal(left, []string{dst}) {
				t.Fatalf("after the copy: %v, want only %s", left, dst)
			}
		})
	}
}

// A resumable copy whose content turns out wrong (checksum mismatch) removes its partial
// files: there is nothing to resume.
func TestResumableCopyFailingItsChecksumLeavesNothing(t *testing.T) {
	srcDir, outDir := t.TempDir(), t.TempDir()
	src := volume{"c", "raw", 16 << 20, 64}.write(t, srcDir)
	dst := filepath.Join(outDir, "vol-c", "c.raw")
	_, err := clone.Copy(context.Background(), open(t, src), dst, clone.Options{
		Digest: clone.Digest{Algorithm: clone.XXH3Chunked, Value: "00000000000000000000000000000000"}, Format: "raw",
		NoReflink: true, CheckpointEvery: 1 << 20, Checkpoint: func(clone.Checkpoint) error { return nil },
	})
	if !errors.Is(err, clone.ErrChecksum) {
		t.Fatalf("want ErrChecksum, got %v", err)
	}
	if left := leftovers(t, outDir); len(left) > 0 {
		t.Fatalf("left behind: %v", left)
	}
}

// A copy killed with SIGKILL after a few checkpoints is resumed from its last one: the
// partial file (which holds more than the checkpoint says, not fsynced) is verified and the
// copy goes on from the checkpoint, reading only what was left.
func TestCopyKilledResumesFromItsLastCheckpoint(t *testing.T) {
	srcDir, outDir := t.TempDir(), t.TempDir()
	src := volume{"kr", "raw", 2 << 30, 1024}.write(t, srcDir) // 64 MiB of data
	digest := sum(t, src, clone.XXH3Chunked)
	dst := filepath.Join(outDir, "vol-kr", "kr.raw")
	cpFile := filepath.Join(t.TempDir(), "checkpoint.json")

	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), "CLONE_TEST_CHILD_SRC="+src, "CLONE_TEST_CHILD_DST="+dst, "CLONE_TEST_CHILD_SUM="+digest,
		"CLONE_TEST_CHILD_CHECKPOINT="+cpFile)
	var stderr bytes.Buffer
	child.Stderr = &stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	var cp clone.Checkpoint
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(cpFile); err == nil && json.Unmarshal(b, &cp) == nil && cp.Data >= 24<<20 {
			break
		}
		if time.Now().After(deadline) {
			child.Process.Kill()
			child.Wait()
			t.Fatalf("the child never checkpointed 24 MiB: %s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(30 * time.Millisecond) // it goes on past the checkpoint
	child.Process.Signal(unix.SIGKILL)
	child.Wait()
	b, err := os.ReadFile(cpFile)
	if err != nil || json.Unmarshal(b, &cp) != nil {
		t.Fatalf("last checkpoint: %v", err)
	}

	res, err := clone.Copy(context.Background(), open(t, src), dst, clone.Options{
		Digest: clone.Digest{Algorithm: clone.XXH3Chunked, Value: digest}, Format: "raw",
		CheckpointEvery: 4 << 20, Checkpoint: func(clone.Checkpoint) error { return nil }, Resume: &cp})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("killed with %d MiB of data checkpointed; resumed at %d MiB, read %d MiB more", cp.Data>>20, res.ResumedAt>>20, res.DataBytes>>20)
	if res.ResumedAt != cp.Offset || res.DataBytes != 64<<20-cp.Data {
		t.Fatalf("resumed at %d (refused %q) reading %d bytes; the checkpoint is at %d with %d bytes of data",
			res.ResumedAt, res.ResumeRefused, res.DataBytes, cp.Offset, cp.Data)
	}
	sameBytes(t, src, dst)
	if left := leftovers(t, outDir); !slices.Equal(left, []string{dst}) {
		t.Fatalf("files after the resumed copy: %v, want only %s", left, dst)
	}
}

// A copy whose run ended before it could record its end (the worker killed after the
// rename, Redis unreachable) is given its last checkpoint again while the file is in place:
// it is checked where it is, and the backup is not read again (the source given here is
// closed: any read of it fails). A file in place that no longer matches is copied again.
func TestResumedCopyFinishedEarlierIsNotCopiedAgain(t *testing.T) {
	srcDir := t.TempDir()
	src := volume{"f", "raw", 16 << 20, 256}.write(t, srcDir)
	alg := clone.Algorithms()[0]
	digest := sum(t, src, alg)
	dst := filepath.Join(t.TempDir(), "vol-f", "f.raw")
	var last *clone.Checkpoint
	opt := clone.Options{Digest: clone.Digest{Algorithm: alg, Value: digest}, Format: "raw", NoReflink: true, CheckpointEvery: 2 << 20,
		Checkpoint: func(cp clone.Checkpoint) error { last = &cp; return nil }}
	if _, err := clone.Copy(context.Background(), open(t, src), dst, opt); err != nil {
		t.Fatal(err)
	}
	if last == nil {
		t.Fatal("no checkpoint was recorded")
	}
	opt.Resume = last
	closed := open(t, src)
	closed.Close()
	var read int64
	opt.Progress = func(p clone.Progress) { read = p.Read }
	res, err := clone.Copy(context.Background(), closed, dst, opt)
	if err != nil {
		t.Fatalf("the copy finished earlier was not recognised: %v", err)
	}
	if res.ResumedAt != 16<<20 || read != 0 || res.Checksum != digest {
		t.Fatalf("resumed at %d, %d bytes read from the backup, checksum %s; want resumed at its end, nothing read, %s", res.ResumedAt, read, res.Checksum, digest)
	}
	if got := sum(t, dst, alg); got != digest {
		t.Fatalf("the file in place changed: %s", got)
	}

	// The file in place damaged: it is copied again from the backup.
	f, err := os.OpenFile(dst, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff, 0xee}, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	res, err = clone.Copy(context.Background(), open(t, src), dst, opt)
	if err != nil {
		t.Fatal(err)
	}
	if res.ResumedAt == 16<<20 || read == 0 {
		t.Fatalf("a damaged file in place was taken as the finished copy (resumed at %d, %d bytes read)", res.ResumedAt, read)
	}
	if got := sum(t, dst, alg); got != digest {
		t.Fatalf("the copy made again does not match: %s", got)
	}
}
