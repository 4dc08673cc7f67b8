package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster, each node a Server: masters first, then their replicas.
type Cluster struct {
	Nodes []*Server
}

// Addrs returns the nodes' addresses, comma-separated (REDIS_ADDR's form).
func (c *Cluster) Addrs() string {
	a := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		a[i] = n.Addr
	}
	return strings.Join(a, ",")
}

// StartCluster runs a Redis Cluster of n masters on free ports and waits until it is ok.
func StartCluster(tb testing.TB, n int) *Cluster { return StartClusterWithReplicas(tb, n, 0) }

// StartClusterWithReplicas runs a Redis Cluster of masters with replicas each (the cluster
// fails a dead master over to its replica about 2 s after it stops answering) and waits until
// it is ok and every replica is in sync.
func StartClusterWithReplicas(tb testing.TB, masters, replicas int) *Cluster {
	tb.Helper()
	c := &Cluster{}
	n := masters * (1 + replicas)
	for i := 0; i < n; i++ {
		dir := tb.TempDir()
		c.Nodes = append(c.Nodes, Start(tb, Options{Args: []string{"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"), "--cluster-node-timeout", "2000"}}))
	}
	args := []string{"--cluster", "create"}
	for _, s := range c.Nodes {
		args = append(args, s.Addr)
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, s := range c.Nodes {
		cl := redis.NewClient(&redis.Options{Addr: s.Addr})
		for {
			info, err := cl.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				cl.Close()
				tb.Fatalf("cluster never became ok at %s: %v %s", s.Addr, err, info)
			}
			time.Sleep(100 * time.Millisecond)
		}
		cl.Close()
	}
	if replicas > 0 {
		for _, s := range c.Nodes {
			cl := redis.NewClient(&redis.Options{Addr: s.Addr})
			info, _ := cl.Info(context.Background(), "replication").Result()
			cl.Close()
			if strings.Contains(info, "role:slave") {
				waitReplica(tb, s.Addr)
			}
		}
	}
	return c
}

// MasterOf returns the address of the master serving a key's slot, as a live node sees it.
func (c *Cluster) MasterOf(ctx context.Context, key string) (string, error) {
	var lastErr error
	for _, n := range c.Nodes {
		if n.cmd == nil {
			continue
		}
		cl := redis.NewClient(&redis.Options{Addr: n.Addr, DialTimeout: 200 * time.Millisecond})
		slot, err := cl.ClusterKeySlot(ctx, key).Result()
		if err == nil {
			var shards []redis.ClusterShard
			if shards, err = cl.ClusterShards(ctx).Result(); err == nil {
				cl.Close()
				for _, s := range shards {
					for _, r := range s.Slots {
						if r.Start <= slot && slot <= r.End {
							for _, nd := range s.Nodes {
								if nd.Role == "master" && nd.Health == "online" {
									return net.JoinHostPort(nd.IP, strconv.FormatInt(nd.Port, 10)), nil
								}
							}
						}
					}
				}
				return "", fmt.Errorf("no node serves slot %d", slot)
			}
		}
		cl.Close()
		lastErr = err
	}
	return "", lastErr
}

// Node returns the node listening on addr.
func (c *Cluster) Node(addr string) *Server {
	for _, n := range c.Nodes {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// Sentinel is a master, a replica and one sentinel watching them (quorum 1), for failover
// tests.
type Sentinel struct {
	Master, Replica *Server
	Sentinel        *Server
	MasterName      string
}

// StartSentinel runs a master, a replica of it, and a sentinel that fails over within a few
// seconds of the master dying.
func StartSentinel(tb testing.TB) *Sentinel {
	tb.Helper()
	s := &Sentinel{MasterName: "vmrestore-test"}
	s.Master = Start(tb)
	host, port := splitAddr(s.Master.Addr)
	s.Replica = Start(tb, Options{Args: []string{"--replicaof", host, port}})
	waitReplica(tb, s.Replica.Addr)

	dir := tb.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	sport := FreePort(tb)
	text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor %s %s %s 1\n"+
		"sentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 5000\nsentinel parallel-syncs %s 1\n",
		sport, dir, s.MasterName, host, port, s.MasterName, s.MasterName, s.MasterName)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		tb.Fatal(err)
	}
	sen := &Server{Addr: "127.0.0.1:" + strconv.Itoa(sport), Dir: dir, tb: tb, args: []string{conf, "--sentinel"}}
	if err := sen.start(); err != nil {
		tb.Fatalf("start sentinel: %v", err)
	}
	tb.Cleanup(sen.Kill)
	s.Sentinel = sen
	// Wait until the sentinel knows the replica, or it could not fail over.
	cl := redis.NewSentinelClient(&redis.Options{Addr: sen.Addr})
	defer cl.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		reps, err := cl.Replicas(context.Background(), s.MasterName).Result()
		if err == nil && len(reps) > 0 {
			return s
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the sentinel never saw the replica: %v %v", reps, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// CurrentMaster asks the sentinel for the master's address.
func (s *Sentinel) CurrentMaster(ctx context.Context) (string, error) {
	cl := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinel.Addr})
	defer cl.Close()
	a, err := cl.GetMasterAddrByName(ctx, s.MasterName).Result()
	if err != nil {
		return "", err
	}
	return a[0] + ":" + a[1], nil
}

func splitAddr(a string) (string, string) {
	i := strings.LastIndex(a, ":")
	return a[:i], a[i+1:]
}

func waitReplica(tb testing.TB, addr string) {
	tb.Helper()
	cl := redis.NewClient(&redis.Options{Addr: addr})
	defer cl.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := cl.Info(context.Background(), "replication").Result()
		if err == nil && strings.Contains(info, "master_link_status:up") {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("replica %s never synced: %v %s", addr, err, info)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
