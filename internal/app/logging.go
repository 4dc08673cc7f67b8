package app

import (
	"context"
	"log/slog"
	"slices"
	"sync"
)

// deferredAttrs wraps a slog handler so that With costs nothing until a line is written: the
// logger the pipeline makes for each job (With "job") is built from its attributes only
// when the job logs something at an enabled level, not for every job that logs nothing.
// The handlers it wraps decide Enabled by level alone, which attributes do not change.
type deferredAttrs struct {
	base  slog.Handler // the handler the attributes are added to
	attrs []slog.Attr
	once  sync.Once
	built slog.Handler
}

func deferAttrs(h slog.Handler) slog.Handler { return &deferredAttrs{base: h} }

// handler is base with the attributes, built on first use.
func (h *deferredAttrs) handler() slog.Handler {
	if len(h.attrs) == 0 {
		return h.base
	}
	h.once.Do(func() { h.built = h.base.WithAttrs(h.attrs) })
	return h.built
}

func (h *deferredAttrs) Enabled(ctx context.Context, l slog.Level) bool {
	return h.base.Enabled(ctx, l)
}

func (h *deferredAttrs) Handle(ctx context.Context, r slog.Record) error {
	return h.handler().Handle(ctx, r)
}

func (h *deferredAttrs) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	return &deferredAttrs{base: h.base, attrs: slices.Concat(h.attrs, as)}
}

func (h *deferredAttrs) WithGroup(name string) slog.Handler {
	return &deferredAttrs{base: h.handler().WithGroup(name)}
}

// uniqueKeys wraps a slog handler so that an attribute a logger already carries (added with
// With, such as the pipeline's per-job "job") is not written a second time when a call names
// it again: JSON lines keep one "job" key. Once a group is opened the wrapper steps aside,
// since grouped keys cannot clash with the top-level ones.
type uniqueKeys struct {
	inner   slog.Handler
	keys    map[string]bool
	grouped bool
}

func dedupe(h slog.Handler) slog.Handler { return &uniqueKeys{inner: h} }

func (h *uniqueKeys) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

func (h *uniqueKeys) WithAttrs(as []slog.Attr) slog.Handler {
	if h.grouped {
		return &uniqueKeys{inner: h.inner.WithAttrs(as), grouped: true}
	}
	keys := make(map[string]bool, len(h.keys)+len(as))
	for k := range h.keys {
		keys[k] = true
	}
	keep := make([]slog.Attr, 0, len(as))
	for _, a := range as {
		if keys[a.Key] {
			continue
		}
		keys[a.Key] = true
		keep = append(keep, a)
	}
	return &uniqueKeys{inner: h.inner.WithAttrs(keep), keys: keys}
}

func (h *uniqueKeys) WithGroup(name string) slog.Handler {
	return &uniqueKeys{inner: h.inner.WithGroup(name), grouped: true}
}

func (h *uniqueKeys) Handle(ctx context.Context, r slog.Record) error {
	if h.grouped || len(h.keys) == 0 {
		return h.inner.Handle(ctx, r)
	}
	dup := false
	r.Attrs(func(a slog.Attr) bool {
		dup = h.keys[a.Key]
		return !dup
	})
	if !dup {
		return h.inner.Handle(ctx, r)
	}
	nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if !h.keys[a.Key] {
			nr.AddAttrs(a)
		}
		return true
	})
	return h.inner.Handle(ctx, nr)
}
