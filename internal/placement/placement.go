// Package placement chooses the host and primary storages of a VM the way ZStack does and
// reserves the capacity atomically.
//
// The filter chain runs in ZStack's order, each filter naming itself when it empties the
// candidate list:
//
//	L2 attachment → designation and state → CPU/memory capacity → primary storage → avoid list
//
// The surviving hosts are ordered by the host allocator strategy (Default shuffles,
// LeastVmPreferred puts the emptiest first, LastHostPreferred puts the source VM's host first,
// Designated is the one host asked for), each with its volumes assigned to primary storages
// by the storage strategy. The first few candidates go to one Redis script that reserves the
// first whose claims all still fit: placement decisions are made on a snapshot, but capacity
// is never over-committed because the script re-checks every limit under Redis's lock.
package placement

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"

	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/store"
)

// Filter names, as they appear in refusals and in the placement-refusal metric.
const (
	FilterL2Attachment = "L2NetworkAttachment"
	FilterDesignation  = "HostDesignationAndState"
	FilterCapacity     = "HostCapacity"
	FilterStorage      = "PrimaryStorage"
	FilterAvoid        = "AvoidHost"
)

// Volume is a volume to place.
type Volume struct {
	UUID string
	Size int64
	Root bool
}

// Request is what a VM needs.
type Request struct {
	ZoneUUID        string
	ClusterUUID     string
	HostUUID        string
	L3NetworkUUIDs  []string
	CPU             int64
	Memory          int64
	Volumes         []Volume
	RootStorage     string
	DataStorage     string
	HostStrategy    string
	StorageStrategy string
	LastHostUUID    string
	Avoid           []string
}

// Result is a reserved placement.
type Result struct {
	HostUUID          string            `json:"hostUuid"`
	ClusterUUID       string            `json:"clusterUuid"`
	ZoneUUID          string            `json:"zoneUuid"`
	AllocatorStrategy string            `json:"allocatorStrategy"`
	VolumeStorage     map[string]string `json:"volumeStorage"`
}

// Refusal says which filter emptied the candidate list, with the numbers that decided it.
type Refusal struct {
	Filter  string
	Details string
}

func (r *Refusal) Error() string { return r.Details }

// Store is what placement needs of Redis.
type Store interface {
	Usage(ctx context.Context, fields []string) ([]store.FieldUsage, error)
	Reserve(ctx context.Context, job string, cands []store.Candidate) (store.ReserveResult, error)
}

// candidatesPerRound is how many ordered candidates one reservation attempt offers Redis;
// maxRounds bounds the re-reads when other restores take them first.
const (
	candidatesPerRound = 8
	maxRounds          = 8
)

// ErrContended means every fitting host was taken by concurrent restores between reading
// the usage and reserving, round after round, while the filter chain still finds room: the
// caller should try again shortly rather than refuse.
var ErrContended = errors.New("placement keeps losing races with concurrent restores")

// Place runs the filter chain, orders the candidates by strategy, and reserves the first that
// fits for job. It returns a *Refusal when nothing fits. A job that already holds a
// reservation gets it back (decoded from its label), so a re-run never reserves twice.
func Place(ctx context.Context, ix *catalog.Index, st Store, jobUUID string, req Request) (*Result, error) {
	var lastFull string
	for round := 0; round < maxRounds; round++ {
		cands, refusal, err := Candidates(ctx, ix, st, req, candidatesPerRound)
		if err != nil {
			return nil, err
		}
		if refusal != nil {
			return nil, refusal
		}
		offers := make([]store.Candidate, len(cands))
		for i, c := range cands {
			offers[i] = store.Candidate{Label: c.label(), Claims: c.Claims}
		}
		res, err := st.Reserve(ctx, jobUUID, offers)
		if err != nil {
			return nil, err
		}
		if res.Existing != nil {
			return decodeLabel(res.Existing.Label)
		}
		if res.Index >= 0 {
			return cands[res.Index].Result, nil
		}
		lastFull = res.FullField
	}
	return nil, fmt.Errorf("%w (last refusal on %s)", ErrContended, lastFull)
}

// Candidate is one feasible placement with the claims to reserve.
type Candidate struct {
	*Result
	Claims []store.Claim
}

func (c Candidate) label() string {
	var b strings.Builder
	b.WriteString(c.HostUUID + " " + c.ClusterUUID + " " + c.ZoneUUID + " " + c.AllocatorStrategy)
	vols := make([]string, 0, len(c.VolumeStorage))
	for v := range c.VolumeStorage {
		vols = append(vols, v)
	}
	sort.Strings(vols)
	for _, v := range vols {
		b.WriteString(" " + v + "=" + c.VolumeStorage[v])
	}
	return b.String()
}

func decodeLabel(l string) (*Result, error) {
	f := strings.Fields(l)
	if len(f) < 4 {
		return nil, fmt.Errorf("malformed reservation label %q", l)
	}
	r := &Result{HostUUID: f[0], ClusterUUID: f[1], ZoneUUID: f[2], AllocatorStrategy: f[3], VolumeStorage: map[string]string{}}
	for _, kv := range f[4:] {
		v, ps, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("malformed reservation label %q", l)
		}
		r.VolumeStorage[v] = ps
	}
	return r, nil
}

// Usage is read in batches of hosts, growing from firstBatch to maxBatch: placement stops
// once it has enough fitting candidates, so on a site of 10,000 hosts one small round trip
// usually suffices, and a nearly full site is still scanned in few round trips.
const (
	firstBatch = 16
	maxBatch   = 1024
)

// Candidates runs the filter chain on current usage and returns up to limit feasible
// placements in strategy order (limit ≤ 0: all of them), or the refusal of the filter that
// emptied the list. Nothing is reserved; dry runs use it directly.
func Candidates(ctx context.Context, ix *catalog.Index, st Store, req Request, limit int) ([]Candidate, *Refusal, error) {
	strategy := req.HostStrategy
	if req.HostUUID != "" {
		strategy = catalog.HostDesignated
	}
	if strategy == "" {
		strategy = catalog.HostDefault
	}

	// 1. Clusters attached to the L2 network of every requested L3.
	clusters, refusal := attachedClusters(ix, req)
	if refusal != nil {
		return nil, refusal, nil
	}
	// 2. Designation (host over cluster over zone) and state.
	hosts, refusal := designatedHosts(ix, req, clusters)
	if refusal != nil {
		return nil, refusal, nil
	}
	// Order by strategy before reading capacity, so that the first batches are the best.
	if err := order(ctx, st, strategy, req, hosts); err != nil {
		return nil, nil, err
	}
	avoid := map[string]bool{}
	for _, a := range req.Avoid {
		avoid[a] = true
	}

	// 3-5. Capacity, primary storage and avoid list, batch by batch.
	var cands []Candidate
	var bestCPU, bestMem int64 = -1, -1
	capacityFit, avoided := 0, 0
	storageWhy := ""
	size := firstBatch
	if limit <= 0 {
		size = maxBatch
	}
	for start := 0; start < len(hosts) && (limit <= 0 || len(cands) < limit); start, size = start+size, min(size*4, maxBatch) {
		batch := hosts[start:min(start+size, len(hosts))]
		fields, storages := usageFields(ix, batch)
		usage, err := st.Usage(ctx, fields)
		if err != nil {
			return nil, nil, err
		}
		u := make(map[string]store.FieldUsage, len(fields))
		for i, f := range fields {
			u[f] = usage[i]
		}
		for _, h := range batch {
			cpu, mem := u[store.FieldHostCPU(h.UUID)], u[store.FieldHostMemory(h.UUID)]
			if cpu.Limit < 0 || mem.Limit < 0 {
				continue
			}
			freeCPU, freeMem := cpu.Limit-cpu.Used, mem.Limit-mem.Used
			bestCPU, bestMem = max(bestCPU, freeCPU), max(bestMem, freeMem)
			if freeCPU < req.CPU || freeMem < req.Memory {
				continue
			}
			capacityFit++
			c, why := assignStorage(ix, req, h, storages[h.ClusterUUID], u)
			if c == nil {
				storageWhy = why
				continue
			}
			if avoid[h.UUID] {
				avoided++
				continue
			}
			c.AllocatorStrategy = strategy
			cands = append(cands, *c)
			if limit > 0 && len(cands) == limit {
				break
			}
		}
	}
	switch {
	case len(cands) > 0:
		return cands, nil, nil
	case capacityFit == 0:
		return nil, &Refusal{Filter: FilterCapacity, Details: fmt.Sprintf(
			"no host having cpu[%d], memory[%d bytes] found in %s (%d candidate hosts; the most free is cpu[%d], memory[%d bytes])",
			req.CPU, req.Memory, scopeText(req, clusters), len(hosts), max(bestCPU, 0), max(bestMem, 0))}, nil
	case avoided == 0:
		return nil, &Refusal{Filter: FilterStorage, Details: fmt.Sprintf(
			"no primary storage can hold the volumes (%s) on any of %d hosts with enough cpu and memory: %s",
			volumesText(req.Volumes), capacityFit, storageWhy)}, nil
	}
	return nil, &Refusal{Filter: FilterAvoid, Details: fmt.Sprintf("every host that fits (%d) is in the avoid list", avoided)}, nil
}

func attachedClusters(ix *catalog.Index, req Request) ([]*catalog.Cluster, *Refusal) {
	if len(req.L3NetworkUUIDs) == 0 {
		out := make([]*catalog.Cluster, 0, len(ix.Clusters))
		for i := range ix.Site.Clusters {
			out = append(out, &ix.Site.Clusters[i])
		}
		return out, nil
	}
	count := map[string]int{}
	for _, l3u := range req.L3NetworkUUIDs {
		l3 := ix.L3Networks[l3u]
		if l3 == nil {
			return nil, &Refusal{Filter: FilterL2Attachment, Details: fmt.Sprintf("l3 network[uuid:%s] is not on this site", l3u)}
		}
		for _, c := range ix.ClustersByL2[l3.L2NetworkUUID] {
			count[c.UUID]++
		}
	}
	var out []*catalog.Cluster
	for i := range ix.Site.Clusters {
		c := &ix.Site.Clusters[i]
		if count[c.UUID] == len(req.L3NetworkUUIDs) {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil, &Refusal{Filter: FilterL2Attachment, Details: fmt.Sprintf(
			"no cluster is attached to the L2 networks of all l3 networks %v", req.L3NetworkUUIDs)}
	}
	return out, nil
}

func designatedHosts(ix *catalog.Index, req Request, clusters []*catalog.Cluster) ([]*catalog.Host, *Refusal) {
	inScope := map[string]bool{}
	for _, c := range clusters {
		switch {
		case req.ClusterUUID != "" && c.UUID != req.ClusterUUID:
		case req.ZoneUUID != "" && req.ClusterUUID == "" && req.HostUUID == "" && c.ZoneUUID != req.ZoneUUID:
		default:
			inScope[c.UUID] = true
		}
	}
	if req.HostUUID != "" {
		h := ix.Hosts[req.HostUUID]
		switch {
		case h == nil:
			return nil, &Refusal{Filter: FilterDesignation, Details: fmt.Sprintf("host[uuid:%s] is not on this site", req.HostUUID)}
		case !inScope[h.ClusterUUID]:
			return nil, &Refusal{Filter: FilterDesignation, Details: fmt.Sprintf(
				"host[uuid:%s] is in cluster[uuid:%s], which is not attached to the L2 networks of the requested l3 networks or not in the requested scope", h.UUID, h.ClusterUUID)}
		case !ix.HostUsable(h):
			return nil, &Refusal{Filter: FilterDesignation, Details: fmt.Sprintf(
				"host[uuid:%s] is %s and %s; a restore needs an Enabled and Connected host in an Enabled cluster and zone", h.UUID, h.State, h.Status)}
		}
		return []*catalog.Host{h}, nil
	}
	var hosts []*catalog.Host
	total := 0
	for _, c := range clusters {
		if !inScope[c.UUID] {
			continue
		}
		for _, h := range ix.HostsByCluster[c.UUID] {
			total++
			if ix.HostUsable(h) {
				hosts = append(hosts, h)
			}
		}
	}
	if len(hosts) == 0 {
		return nil, &Refusal{Filter: FilterDesignation, Details: fmt.Sprintf(
			"no Enabled and Connected host found in %s (%d hosts there, none usable)", scopeText(req, clusters), total)}
	}
	return hosts, nil
}

// usageFields lists the capacity fields of the hosts and of the storages of their clusters.
func usageFields(ix *catalog.Index, hosts []*catalog.Host) ([]string, map[string][]*catalog.PrimaryStorage) {
	fields := make([]string, 0, 3*len(hosts)+8)
	storages := map[string][]*catalog.PrimaryStorage{}
	seen := map[string]bool{}
	for _, h := range hosts {
		fields = append(fields, store.FieldHostCPU(h.UUID), store.FieldHostMemory(h.UUID), store.FieldHostVMs(h.UUID))
		pss, ok := storages[h.ClusterUUID]
		if !ok {
			pss = ix.StoragesByCluster[h.ClusterUUID]
			storages[h.ClusterUUID] = pss
		}
		for _, ps := range pss {
			if ps.Type == catalog.PSLocalStorage {
				fields = append(fields, store.FieldStorageBytes(ps.UUID, h.UUID))
			} else if !seen[ps.UUID] {
				fields = append(fields, store.FieldStorageBytes(ps.UUID, ""))
			}
			if !seen[ps.UUID] {
				seen[ps.UUID] = true
				fields = append(fields, store.FieldStorageVols(ps.UUID))
			}
		}
	}
	return fields, storages
}

// assignStorage puts the host's volumes on primary storages of its cluster: the root volume
// on the requested storage or one chosen by strategy, the data volumes on the requested data
// storage, else beside the root if it has room, else on another storage chosen by strategy.
func assignStorage(ix *catalog.Index, req Request, h *catalog.Host, pss []*catalog.PrimaryStorage, u map[string]store.FieldUsage) (*Candidate, string) {
	c := &storageChoice{req: req, h: h, pss: pss, u: u}
	root, rootSize, data, dataSize := splitVolumes(req.Volumes)
	rootPS, problem := c.rootStorage(rootSize, dataSize)
	if problem != "" {
		return nil, problem
	}
	var dataPS *catalog.PrimaryStorage
	if len(data) > 0 {
		if dataPS, problem = c.dataStorage(rootPS, rootSize, dataSize); problem != "" {
			return nil, problem
		}
	}
	return c.candidate(ix, root, data, rootPS, dataPS), ""
}

// splitVolumes separates the root volume from the data volumes, with their sizes.
func splitVolumes(vs []Volume) (root Volume, rootSize int64, data []Volume, dataSize int64) {
	for _, v := range vs {
		if v.Root {
			root, rootSize = v, v.Size
		} else {
			data = append(data, v)
			dataSize += v.Size
		}
	}
	return root, rootSize, data, dataSize
}

// storageChoice chooses the primary storages of one VM on one host, among those attached to
// its cluster (pss), against the usage u.
type storageChoice struct {
	req Request
	h   *catalog.Host
	pss []*catalog.PrimaryStorage
	u   map[string]store.FieldUsage
}

// localHost is the host whose share of ps is used: h for a LocalStorage, none otherwise.
func (c *storageChoice) localHost(ps *catalog.PrimaryStorage) string {
	if ps.Type == catalog.PSLocalStorage {
		return c.h.UUID
	}
	return ""
}

func (c *storageChoice) usage(ps *catalog.PrimaryStorage) store.FieldUsage {
	return c.u[store.FieldStorageBytes(ps.UUID, c.localHost(ps))]
}

// free is the bytes ps has free above its reserve, or -1 when it cannot be used.
func (c *storageChoice) free(ps *catalog.PrimaryStorage) int64 {
	fu := c.usage(ps)
	if fu.Limit < 0 {
		return -1
	}
	return fu.Limit - fu.Used
}

// attached is the attached storage of that uuid, or nil.
func (c *storageChoice) attached(uuid string) *catalog.PrimaryStorage {
	for _, ps := range c.pss {
		if ps.UUID == uuid {
			return ps
		}
	}
	return nil
}

// pick chooses, by the request's storage strategy, a storage other than exclude with need
// bytes free; nil when none has.
func (c *storageChoice) pick(need int64, exclude string) *catalog.PrimaryStorage {
	var ok []*catalog.PrimaryStorage
	for _, ps := range c.pss {
		if ps.UUID != exclude && c.free(ps) >= need {
			ok = append(ok, ps)
		}
	}
	if len(ok) == 0 {
		return nil
	}
	switch c.req.StorageStrategy {
	case catalog.PSLeastVolume:
		sort.SliceStable(ok, func(a, b int) bool {
			return c.u[store.FieldStorageVols(ok[a].UUID)].Used < c.u[store.FieldStorageVols(ok[b].UUID)].Used
		})
	case catalog.PSMaximumAvailable:
		sort.SliceStable(ok, func(a, b int) bool { return c.free(ok[a]) > c.free(ok[b]) })
	default:
		return ok[rand.IntN(len(ok))]
	}
	return ok[0]
}

// rootStorage is the storage of the root volume: the one asked for, if it has room (for the
// data volumes too when they go with it), or else one that holds everything, or else one
// that holds the root volume. The text says why there is none.
func (c *storageChoice) rootStorage(rootSize, dataSize int64) (*catalog.PrimaryStorage, string) {
	req, h := c.req, c.h
	if req.RootStorage != "" {
		rootPS := c.attached(req.RootStorage)
		if rootPS == nil {
			return nil, fmt.Sprintf("primary storage[uuid:%s] for the root volume is not attached to cluster[uuid:%s]", req.RootStorage, h.ClusterUUID)
		}
		need := rootSize
		if req.DataStorage == "" || req.DataStorage == req.RootStorage {
			need += dataSize
		}
		if f := c.free(rootPS); f < need {
			return nil, storageShort(rootPS, h, need, f, c.usage(rootPS).Down)
		}
		return rootPS, ""
	}
	// Prefer a storage that holds everything, as ZStack keeps a VM's volumes together.
	var rootPS *catalog.PrimaryStorage
	if req.DataStorage == "" {
		rootPS = c.pick(rootSize+dataSize, "")
	}
	if rootPS == nil {
		rootPS = c.pick(rootSize, "")
	}
	if rootPS == nil {
		return nil, fmt.Sprintf("no Enabled, Connected primary storage attached to cluster[uuid:%s] has %d bytes free for the root volume%s",
			h.ClusterUUID, rootSize, freeText(c.pss, h, c.usage))
	}
	return rootPS, ""
}

// dataStorage is the storage of the data volumes: the one asked for, if it has room, or
// the root's when it holds them too, or another with room for them all.
func (c *storageChoice) dataStorage(rootPS *catalog.PrimaryStorage, rootSize, dataSize int64) (*catalog.PrimaryStorage, string) {
	req, h := c.req, c.h
	switch {
	case req.DataStorage != "":
		dataPS := c.attached(req.DataStorage)
		if dataPS == nil {
			return nil, fmt.Sprintf("primary storage[uuid:%s] for data volumes is not attached to cluster[uuid:%s]", req.DataStorage, h.ClusterUUID)
		}
		need := dataSize
		if dataPS == rootPS {
			need += rootSize
		}
		if f := c.free(dataPS); f < need {
			return nil, storageShort(dataPS, h, need, f, c.usage(dataPS).Down)
		}
		return dataPS, ""
	case c.free(rootPS) >= rootSize+dataSize:
		return rootPS, ""
	}
	dataPS := c.pick(dataSize, rootPS.UUID)
	if dataPS == nil {
		return nil, fmt.Sprintf("no primary storage attached to cluster[uuid:%s] besides the root's has %d bytes free for the data volumes%s",
			h.ClusterUUID, dataSize, freeText(c.pss, h, c.usage))
	}
	return dataPS, ""
}

// candidate is the placement on h with its claims: the host's CPU, memory and VM count, and
// each storage's bytes and volume count.
func (c *storageChoice) candidate(ix *catalog.Index, root Volume, data []Volume, rootPS, dataPS *catalog.PrimaryStorage) *Candidate {
	h, req := c.h, c.req
	res := &Result{HostUUID: h.UUID, ClusterUUID: h.ClusterUUID, ZoneUUID: ix.ZoneOfHost(h), VolumeStorage: map[string]string{}}
	claims := []store.Claim{store.HostCPU(h.UUID, req.CPU), store.HostMemory(h.UUID, req.Memory), store.HostVMs(h.UUID)}
	bytes := map[*catalog.PrimaryStorage]int64{}
	vols := map[*catalog.PrimaryStorage]int64{}
	if root.UUID != "" {
		res.VolumeStorage[root.UUID] = rootPS.UUID
		bytes[rootPS] += root.Size
		vols[rootPS]++
	}
	for _, v := range data {
		res.VolumeStorage[v.UUID] = dataPS.UUID
		bytes[dataPS] += v.Size
		vols[dataPS]++
	}
	for _, ps := range []*catalog.PrimaryStorage{rootPS, dataPS} {
		if ps == nil || bytes[ps] == 0 {
			continue
		}
		claims = append(claims, store.StorageBytes(ps.UUID, c.localHost(ps), bytes[ps]), store.StorageVolumes(ps.UUID, vols[ps]))
		delete(bytes, ps)
	}
	return &Candidate{Result: res, Claims: claims}
}

func storageShort(ps *catalog.PrimaryStorage, h *catalog.Host, need, free int64, down string) string {
	switch {
	case down != "":
		return fmt.Sprintf("primary storage[uuid:%s] is not Connected: %s", ps.UUID, down)
	case free < 0:
		return fmt.Sprintf("primary storage[uuid:%s] is not Enabled and Connected", ps.UUID)
	}
	where := ""
	if ps.Type == catalog.PSLocalStorage {
		where = fmt.Sprintf(" on host[uuid:%s]", h.UUID)
	}
	return fmt.Sprintf("primary storage[uuid:%s]%s has %d bytes available above its reserve, %d needed", ps.UUID, where, free, need)
}

func freeText(pss []*catalog.PrimaryStorage, h *catalog.Host, usage func(*catalog.PrimaryStorage) store.FieldUsage) string {
	if len(pss) == 0 {
		return " (no primary storage is attached)"
	}
	parts := make([]string, 0, len(pss))
	for _, ps := range pss {
		fu := usage(ps)
		switch {
		case fu.Down != "":
			parts = append(parts, fmt.Sprintf("%s: not Connected (%s)", ps.UUID, fu.Down))
		case fu.Limit < 0:
			parts = append(parts, fmt.Sprintf("%s: not Enabled/Connected", ps.UUID))
		case ps.Type == catalog.PSLocalStorage:
			parts = append(parts, fmt.Sprintf("%s: %d bytes on host[uuid:%s]", ps.UUID, fu.Limit-fu.Used, h.UUID))
		default:
			parts = append(parts, fmt.Sprintf("%s: %d bytes", ps.UUID, fu.Limit-fu.Used))
		}
	}
	return " (available: " + strings.Join(parts, ", ") + ")"
}

func volumesText(vs []Volume) string {
	var total int64
	for _, v := range vs {
		total += v.Size
	}
	return fmt.Sprintf("%d volumes, %d bytes", len(vs), total)
}

func scopeText(req Request, clusters []*catalog.Cluster) string {
	switch {
	case req.HostUUID != "":
		return fmt.Sprintf("host[uuid:%s]", req.HostUUID)
	case req.ClusterUUID != "":
		return fmt.Sprintf("cluster[uuid:%s]", req.ClusterUUID)
	case req.ZoneUUID != "":
		return fmt.Sprintf("zone[uuid:%s]", req.ZoneUUID)
	}
	uuids := make([]string, 0, len(clusters))
	for _, c := range clusters {
		uuids = append(uuids, c.UUID)
	}
	if len(uuids) > 5 {
		return fmt.Sprintf("%d clusters", len(uuids))
	}
	return "clusters" + fmt.Sprint(uuids)
}

// order sorts candidate hosts by the host allocator strategy: Default shuffles,
// LeastVmPreferred puts the hosts with the fewest VMs first (ties shuffled), LastHostPreferred
// puts the source VM's host first, Designated has one host.
func order(ctx context.Context, st Store, strategy string, req Request, hosts []*catalog.Host) error {
	rand.Shuffle(len(hosts), func(i, j int) { hosts[i], hosts[j] = hosts[j], hosts[i] })
	switch strategy {
	case catalog.HostLeastVmPreferred:
		fields := make([]string, len(hosts))
		for i, h := range hosts {
			fields[i] = store.FieldHostVMs(h.UUID)
		}
		usage, err := st.Usage(ctx, fields)
		if err != nil {
			return err
		}
		byCount := make([]struct {
			vms  int64
			host *catalog.Host
		}, len(hosts))
		for i, h := range hosts {
			byCount[i].vms, byCount[i].host = usage[i].Used, h
		}
		sort.SliceStable(byCount, func(a, b int) bool { return byCount[a].vms < byCount[b].vms })
		for i := range byCount {
			hosts[i] = byCount[i].host
		}
	case catalog.HostLastHostPreferred:
		for i, h := range hosts {
			if h.UUID == req.LastHostUUID {
				hosts[0], hosts[i] = hosts[i], hosts[0]
				break
			}
		}
	}
	return nil
}
