package clone

// Test hooks into the package's internals.

// Verifier exposes the digest computation that Copy runs on the way through.
type Verifier interface {
	Data(p []byte)
	Zeros(n int64)
	Sum() string
}

type exported struct{ v verifier }

func (e exported) Data(p []byte) { e.v.data(p) }
func (e exported) Zeros(n int64) { e.v.zeros(n) }
func (e exported) Sum() string   { return e.v.sum() }

// NewVerifier returns the verifier of an algorithm for a file of size bytes.
func NewVerifier(algorithm string, size int64) (Verifier, error) {
	v, err := newVerifier(algorithm, size)
	if err != nil {
		return nil, err
	}
	return exported{v}, nil
}
