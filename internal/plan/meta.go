package plan

import (
	"encoding/json"
	"sort"
	"time"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/planspec"
	"github.com/vmrestore/vmrestore/internal/store"
)

// Meta builds the plan's metadata.
func Meta(uuid string, spec *apiv1.PlanSpec, account string, items []store.PlanItem) (*store.PlanMeta, error) {
	raw, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	m := &store.PlanMeta{UUID: uuid, Name: spec.Name, AccountUUID: account, ClientToken: spec.ClientToken,
		Mode: modeOf(spec), CreatedAt: time.Now(), Concurrency: spec.Concurrency, HaltOnFailure: spec.HaltOnFailure,
		WebHook: spec.WebHook, ItemCount: len(items), Spec: raw}
	if m.Concurrency == 0 {
		m.Concurrency = planspec.DefaultConcurrency
	}
	tiers := map[int]bool{}
	for _, it := range items {
		m.BytesTotal += it.BytesTotal
		m.DataTotal += it.DataTotal
		tiers[it.Tier] = true
	}
	for t := range tiers {
		m.Tiers = append(m.Tiers, t)
	}
	sort.Ints(m.Tiers)
	return m, nil
}
