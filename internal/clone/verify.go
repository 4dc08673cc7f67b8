package clone

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// Verify checks a volume file in place, as Copy checks its source, writing nothing: its
// format and virtual size (Options.Format, Options.VirtualSize), then its checksum, reading
// its data once (holes are not read) with Options.Progress and Options.Throttle applied. A
// mismatch fails with ErrChecksum; a read failure is a *SourceError. With Options.Compute the
// checksum is only computed (Result.Checksum), not compared.
func Verify(ctx context.Context, f *os.File, opt Options) (res Result, err error) {
	st, err := f.Stat()
	if err != nil {
		return res, &SourceError{err}
	}
	size := st.Size()
	res.Size = size
	v, err := newVerifier(opt.Digest.Algorithm, size)
	if err != nil {
		return res, err
	}
	if err := checkFormat(f, size, opt); err != nil {
		return res, err
	}
	prog := &progress{fn: opt.Progress, p: Progress{Total: size}}
	res.DataBytes, err = verifyFile(ctx, f, size, v, opt, prog)
	var de *DestError
	if errors.As(err, &de) { // verifyFile reads a copy it made; here the file is the source
		err = &SourceError{de.Err}
	}
	if err != nil {
		return res, err
	}
	res.Checksum = v.sum()
	if !opt.Compute && res.Checksum != opt.Digest.Value {
		return res, fmt.Errorf("%w: %s expected %s, computed %s", ErrChecksum, opt.Digest.Algorithm, opt.Digest.Value, res.Checksum)
	}
	prog.advance(size, 0)
	return res, nil
}
