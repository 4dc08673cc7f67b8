package store

import "context"

// Reads made on behalf of a session carry their account in the context (OnBehalfOf). The
// store then answers a job of another account exactly as a job that does not exist
// (ErrNotFound), decided inside Redis in the same single round trip, with nothing of the
// record sent back: neither the answer nor its timing tells a foreign uuid from an unknown
// one. SystemAdmin sessions, and the workers (whose contexts carry no account), see all.

type viewerKey struct{}

// OnBehalfOf returns a context for reads made for an account; all (a SystemAdmin) lifts the
// restriction.
func OnBehalfOf(ctx context.Context, account string, all bool) context.Context {
	if all {
		return ctx
	}
	return context.WithValue(ctx, viewerKey{}, account)
}

// viewer returns the account a read is made for, and whether there is one.
func viewer(ctx context.Context) (string, bool) {
	a, ok := ctx.Value(viewerKey{}).(string)
	return a, ok
}
