package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/placement"
	"github.com/vmrestore/vmrestore/internal/queue"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// justCreate reports whether the job only records the VM (no host, volumes or NICs).
func justCreate(rec *job.Record) bool { return rec.Request.Strategy == zstack.StrategyJustCreate }

// PlacementRequest turns a resolved VM into a placement request.
func PlacementRequest(req *job.Request, r *job.Resolved) placement.Request {
	pr := placement.Request{
		ZoneUUID: req.ZoneUUID, ClusterUUID: req.ClusterUUID, HostUUID: req.HostUUID,
		CPU: r.CPUNum, Memory: r.MemorySize,
		RootStorage: r.RootPrimaryStorage, DataStorage: r.DataPrimaryStorage,
		HostStrategy: r.AllocatorStrategy, StorageStrategy: r.PSStrategy, LastHostUUID: r.SourceHostUUID,
	}
	for _, n := range r.NICs {
		pr.L3NetworkUUIDs = append(pr.L3NetworkUUIDs, n.L3NetworkUUID)
	}
	if pr.ZoneUUID == "" && pr.ClusterUUID == "" && pr.HostUUID == "" {
		pr.ZoneUUID = r.ZoneUUID
	}
	for _, v := range r.Volumes {
		pr.Volumes = append(pr.Volumes, placement.Volume{UUID: v.UUID, Size: v.Size, Root: v.Type == "Root"})
	}
	return pr
}

// place reserves host and primary storage capacity.
func (p *Pipeline) place(ctx context.Context, ix *catalog.Index, rec *job.Record) error {
	if justCreate(rec) {
		return p.Store.SaveCheckpoint(ctx, rec.UUID, job.StagePlace, "", nil)
	}
	r := rec.Checkpoints.Resolved
	res, err := placement.Place(ctx, ix, p.Store, rec.UUID, PlacementRequest(rec.Request, r))
	var refusal *placement.Refusal
	if errors.As(err, &refusal) {
		p.Metrics.PlacementRefusals.WithLabelValues(refusal.Filter).Inc()
		return zstack.Operation(zstack.Errorf(zstack.CodeHostAllocation, "filter[%s]: %s", refusal.Filter, refusal.Details))
	}
	if errors.Is(err, placement.ErrContended) {
		return fmt.Errorf("%v: %w", err, queue.ErrBusy)
	}
	if err != nil {
		return err
	}
	pl := &job.Placement{HostUUID: res.HostUUID, ClusterUUID: res.ClusterUUID, ZoneUUID: res.ZoneUUID,
		AllocatorStrategy: res.AllocatorStrategy, VolumeStorage: res.VolumeStorage}
	// The checkpoint is written with the network stage's (one round trip less). Nothing
	// keyed on the placement happens before then: the reservation is the job's, a run that
	// stops in between places again and finds it, and no volume is written before the
	// clone stage, which runs only after both checkpoints.
	rec.Checkpoints.Placement = pl
	rec.Checkpoints.Done = append(rec.Checkpoints.Done, job.StagePlace)
	rec.Checkpoints.PlaceEnded = time.Now()
	return nil
}

// saveNetwork writes the network stage's checkpoint, with the place stage's if this run
// placed the VM and has not written it yet.
func (p *Pipeline) saveNetwork(ctx context.Context, rec *job.Record, nics []job.AllocatedNIC) error {
	cp := store.Checkpoint{Stage: job.StageNetwork, Ended: time.Now()}
	if nics != nil {
		cp.Kind, cp.Value = store.CheckpointNICs, nics
	}
	if err := p.Store.SaveCheckpoints(ctx, rec.UUID, append(unsavedPlace(rec), cp)...); err != nil {
		return err
	}
	rec.Checkpoints.PlaceEnded = time.Time{}
	return nil
}

// unsavedPlace is the place stage's checkpoint if this run has not written it yet.
func unsavedPlace(rec *job.Record) []store.Checkpoint {
	if rec.Checkpoints.PlaceEnded.IsZero() {
		return nil
	}
	return []store.Checkpoint{{Stage: job.StagePlace, Kind: store.CheckpointPlacement, Value: rec.Checkpoints.Placement, Ended: rec.Checkpoints.PlaceEnded}}
}

// network allocates each NIC's IP (static or by the L3's strategy) and MAC.
func (p *Pipeline) network(ctx context.Context, ix *catalog.Index, rec *job.Record) error {
	if justCreate(rec) {
		return p.saveNetwork(ctx, rec, nil)
	}
	r := rec.Checkpoints.Resolved
	nics := make([]job.AllocatedNIC, 0, len(r.NICs))
	for _, n := range r.NICs {
		a, err := p.allocateNIC(ctx, ix, rec, n)
		if err != nil {
			return err
		}
		nics = append(nics, *a)
	}
	rec.Checkpoints.NICs = nics
	return p.saveNetwork(ctx, rec, nics)
}

func (p *Pipeline) allocateNIC(ctx context.Context, ix *catalog.Index, rec *job.Record, n job.PlannedNIC) (*job.AllocatedNIC, error) {
	owner := n.Owner(rec.UUID)
	l3 := ix.L3Networks[n.L3NetworkUUID]
	if l3 == nil {
		return nil, zstack.Operation(zstack.Errorf(zstack.CodeIPAllocation, "l3 network[uuid:%s] was removed from the site", n.L3NetworkUUID))
	}
	mode, static := store.IPRandom, int64(0)
	if l3.IPAllocatorStrategy == catalog.IPFirstAvailable {
		mode = store.IPFirstAvailable
	}
	if n.StaticIP != "" {
		mode = store.IPStatic
		static, _ = catalog.IPToLong(n.StaticIP)
	}
	mac := n.Mac
	if mac == "" {
		mac = RandomMac(n.DeviceID)
	}
	// The address and the MAC are taken in one round trip; both are the owner's, so a
	// failure below leaves nothing that the job's release (by owner) does not give back.
	ranges := ix.Ranges[l3.UUID]
	both, err := p.Store.AllocateNIC(ctx, l3.UUID, ranges, owner, mode, static, mac)
	res := both.IP
	if err == nil && res.Outcome == store.IPStale {
		// The catalog changed under us: reload it and try once more.
		if ix, err = p.Catalog.Current(ctx); err == nil {
			ranges = ix.Ranges[l3.UUID]
			res, err = p.Store.AllocateIP(ctx, l3.UUID, ranges, owner, mode, static)
		}
	}
	if err != nil {
		return nil, err
	}
	switch res.Outcome {
	case store.IPOccupied:
		who := "another VM"
		if res.HeldBy == "gateway" {
			who = "the gateway of its range"
		}
		return nil, zstack.Operation(zstack.Errorf(zstack.CodeIPAllocation, "IP[%s] is not available: it is used by %s on l3 network[uuid:%s]", n.StaticIP, who, l3.UUID))
	case store.IPNotInRange:
		return nil, zstack.InvalidArgument("IP[%s] is not in any IP range of l3 network[uuid:%s]", n.StaticIP, l3.UUID)
	case store.IPExhausted:
		return nil, zstack.Operation(zstack.Errorf(zstack.CodeIPAllocation, "no ip is available in this l3Network[name:%s, uuid:%s]", l3.Name, l3.UUID))
	case store.IPStale:
		return nil, fmt.Errorf("IP ranges of l3 network %s keep changing", l3.UUID)
	}
	a := &job.AllocatedNIC{PlannedNIC: n, IPInLong: res.IP, IP: catalog.LongToIP(res.IP)}
	for _, rg := range ranges {
		if rg.Contains(res.IP) {
			a.IPRangeUUID, a.Netmask, a.Gateway = rg.UUID, rg.Netmask, rg.Gateway
		}
	}
	if both.Mac != "" {
		a.Mac = both.Mac
		return a, nil
	}
	if n.Mac != "" {
		return nil, zstack.Operation(zstack.Errorf(zstack.CodeMACAllocation, "mac address[%s] is already used by another NIC", n.Mac))
	}
	// The random MAC was another NIC's: draw again, alone.
	for try := 1; try < 5; try++ {
		mac, err := p.Store.ClaimMac(ctx, owner, RandomMac(n.DeviceID))
		if errors.Is(err, store.ErrMacTaken) {
			continue
		}
		if err != nil {
			return nil, err
		}
		a.Mac = mac
		return a, nil
	}
	return nil, zstack.Operation(zstack.Errorf(zstack.CodeMACAllocation, "could not find a free MAC address for NIC %d after 5 tries", n.DeviceID))
}

// RandomMac builds a MAC the way ZStack does: "fa", four random octets, the device id.
func RandomMac(deviceID int) string {
	v := rand.Uint32()
	return fmt.Sprintf("fa:%02x:%02x:%02x:%02x:%02x", byte(v>>24), byte(v>>16), byte(v>>8), byte(v), byte(deviceID))
}

// releaseNetwork gives back every address and MAC the job's NICs hold.
func (p *Pipeline) releaseNetwork(ctx context.Context, rec *job.Record) error {
	ix, err := p.Catalog.Current(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range rec.Checkpoints.Resolved.NICs {
		owner := n.Owner(rec.UUID)
		if err := p.Store.ReleaseIP(ctx, n.L3NetworkUUID, ix.Ranges[n.L3NetworkUUID], owner); err != nil {
			errs = append(errs, err)
		}
		if err := p.Store.ReleaseMac(ctx, owner); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
