package pipeline

import (
	"log/slog"

	"github.com/vmrestore/vmrestore/internal/hypervisor"
)

// forJob returns a copy of the pipeline whose logger is log (the job's), so that every line
// the stages log for one job carries its uuid without each call naming it; the built-in
// simulator hypervisor gets the job's logger too. The Pipeline's fields are shared references
// and settings: keep it free of locks so that the copy stays valid.
func (p *Pipeline) forJob(log *slog.Logger) *Pipeline {
	c := *p
	c.Log = log
	if s, ok := c.Hypervisor.(*hypervisor.Simulator); ok {
		sc := *s
		sc.Log = log
		c.Hypervisor = &sc
	}
	return &c
}
