package opsharness

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vmrestore/vmrestore/internal/app"
	"github.com/vmrestore/vmrestore/internal/catalog"
)

// defaults returns the configuration both binaries run with when nothing is set.
func defaults(t testing.TB) app.Config {
	t.Helper()
	c, err := app.LoadConfig("defaults", nil, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// port returns the port of a listen address such as ":8080".
func port(t testing.TB, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return n
}

// knownEnv lists the environment variables the binaries read.
func knownEnv() map[string]bool {
	out := map[string]bool{}
	for _, s := range app.Settings {
		out[s.Env()] = true
	}
	return out
}

func readYAML(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// readDocs parses a multi-document YAML file into generic objects.
func readDocs(t testing.TB, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var out []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if doc != nil {
			out = append(out, doc)
		}
	}
}

// dockerStages returns the stages of the Dockerfile and the lines of each.
func dockerStages(t testing.TB, root string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	from := regexp.MustCompile(`(?i)^FROM\s+(\S+)(?:\s+AS\s+(\S+))?`)
	stages := map[string][]string{}
	cur := ""
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if m := from.FindStringSubmatch(line); m != nil {
			cur = m[2]
			stages[cur] = append(stages[cur], line)
			continue
		}
		if cur != "" && line != "" && !strings.HasPrefix(line, "#") {
			stages[cur] = append(stages[cur], line)
		}
	}
	return stages
}

// stageLines returns the lines of a stage and of the stages it is built FROM, base first.
func stageLines(stages map[string][]string, name string) []string {
	lines := stages[name]
	if len(lines) == 0 {
		return nil
	}
	base := strings.Fields(lines[0])[1]
	if _, ok := stages[base]; ok && base != name {
		return append(stageLines(stages, base), lines...)
	}
	return lines
}

// pinned reports whether an upstream image names a version (not latest, not untagged).
func pinned(image string) bool {
	i := strings.LastIndex(image, ":")
	return i > 0 && !strings.Contains(image[i:], "/") && image[i+1:] != "latest"
}

func TestDockerfileBuildsBothBinariesAsNonRoot(t *testing.T) {
	root := RepoRoot(t)
	def := defaults(t)
	stages := dockerStages(t, root)
	for _, bin := range []struct {
		stage, cmd string
		port       int
	}{{"api", "cmd/api", port(t, def.HTTPAddr)}, {"worker", "cmd/worker", port(t, def.MetricsAddr)}} {
		lines := stageLines(stages, bin.stage)
		if len(lines) == 0 {
			t.Errorf("the Dockerfile has no %q stage", bin.stage)
			continue
		}
		if _, err := os.Stat(filepath.Join(root, bin.cmd, "main.go")); err != nil {
			t.Errorf("%s: %v", bin.cmd, err)
		}
		if !slices.ContainsFunc(stages["build"], func(l string) bool {
			return strings.Contains(l, "./"+bin.cmd+" ") || strings.HasSuffix(l, "./"+bin.cmd)
		}) {
			t.Errorf("the build stage does not build ./%s", bin.cmd)
		}
		var user, entry string
		var exposed []string
		for _, l := range lines {
			f := strings.Fields(l)
			switch strings.ToUpper(f[0]) {
			case "USER":
				user = f[1]
			case "ENTRYPOINT":
				entry = l
			case "EXPOSE":
				exposed = append(exposed, f[1:]...)
			}
			if strings.HasPrefix(strings.ToUpper(l), "FROM ") && !strings.Contains(l, " AS ") {
				t.Errorf("stage %s: unnamed FROM %q", bin.stage, l)
			}
		}
		if user == "" || strings.HasPrefix(user, "0") || strings.HasPrefix(user, "root") {
			t.Errorf("stage %s runs as %q, want a non-root USER", bin.stage, user)
		}
		if !strings.Contains(entry, "vmrestore-"+bin.stage) {
			t.Errorf("stage %s: ENTRYPOINT %q does not run vmrestore-%s", bin.stage, entry, bin.stage)
		}
		if !slices.Contains(exposed, strconv.Itoa(bin.port)) {
			t.Errorf("stage %s exposes %v, want the default port %d", bin.stage, exposed, bin.port)
		}
	}
	for name, lines := range stages {
		image := strings.Fields(lines[0])[1]
		if _, local := stages[image]; !local && !pinned(strings.ReplaceAll(image, "${GO_VERSION}", "1.26")) {
			t.Errorf("stage %s: image %s is not pinned to a version", name, image)
		}
	}
}

// composeFile is the part of docker-compose.yml the test reads.
type composeFile struct {
	Services map[string]struct {
		Image string `yaml:"image"`
		Build *struct {
			Context string `yaml:"context"`
			Target  string `yaml:"target"`
		} `yaml:"build"`
		Command       any               `yaml:"command"`
		Environment   map[string]string `yaml:"environment"`
		Volumes       []string          `yaml:"volumes"`
		Ports         []string          `yaml:"ports"`
		Expose        []string          `yaml:"expose"`
		Healthcheck   map[string]any    `yaml:"healthcheck"`
		DependsOn     any               `yaml:"depends_on"`
		StopGrace     string            `yaml:"stop_grace_period"`
		ContainerName string            `yaml:"container_name"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

// composeDefaults replaces compose's ${VAR:-default} by its default.
var composeDefaults = regexp.MustCompile(`\$\{[A-Z_]+:-([^}]*)\}`)

// hostPath resolves a compose bind-mount source.
func hostPath(root, src string) (string, bool) {
	if !strings.HasPrefix(src, ".") && !strings.HasPrefix(src, "/") {
		return "", false // a named volume
	}
	return filepath.Join(root, src), true
}

func TestComposeFileReferencesWhatExists(t *testing.T) {
	root := RepoRoot(t)
	def := defaults(t)
	var c composeFile
	readYAML(t, filepath.Join(root, "docker-compose.yml"), &c)
	stages := dockerStages(t, root)
	env := knownEnv()
	for _, name := range []string{"redis", "api", "worker", "prometheus", "grafana"} {
		if _, ok := c.Services[name]; !ok {
			t.Errorf("docker-compose.yml has no %s service", name)
		}
	}
	mounts := map[string]map[string]string{} // service → container path → host path
	for name, s := range c.Services {
		mounts[name] = map[string]string{}
		if s.Build != nil {
			if _, err := os.Stat(filepath.Join(root, s.Build.Context, "Dockerfile")); err != nil {
				t.Errorf("%s: build context %q has no Dockerfile", name, s.Build.Context)
			}
			if _, ok := stages[s.Build.Target]; !ok {
				t.Errorf("%s: build target %q is not a Dockerfile stage", name, s.Build.Target)
			}
		} else if !pinned(s.Image) {
			t.Errorf("%s: image %q is not pinned to a version", name, s.Image)
		}
		for _, v := range s.Volumes {
			parts := strings.Split(composeDefaults.ReplaceAllString(v, "$1"), ":")
			if len(parts) < 2 {
				t.Errorf("%s: volume %q has no container path", name, v)
				continue
			}
			if p, bind := hostPath(root, parts[0]); bind {
				if _, err := os.Stat(p); err != nil {
					t.Errorf("%s mounts %s, which does not exist: %v", name, parts[0], err)
				}
				mounts[name][parts[1]] = p
			} else if _, ok := c.Volumes[parts[0]]; !ok {
				t.Errorf("%s: named volume %q is not declared", name, parts[0])
			}
		}
		if name == "api" || name == "worker" {
			for k := range s.Environment {
				if !env[k] {
					t.Errorf("%s: environment variable %s is not read by vmrestore", name, k)
				}
			}
		}
	}

	api, worker := c.Services["api"], c.Services["worker"]
	apiPort := port(t, def.HTTPAddr)
	if a := api.Environment["VMRESTORE_HTTP_ADDR"]; a != "" && port(t, a) != apiPort {
		t.Errorf("api listens on %s, not the default port %d", a, apiPort)
	}
	if !slices.Contains(api.Ports, fmt.Sprintf("%d:%d", apiPort, apiPort)) {
		t.Errorf("api publishes %v, want %d:%d", api.Ports, apiPort, apiPort)
	}
	if site := api.Environment["VMRESTORE_SITE"]; mounts["api"][site] == "" {
		t.Errorf("api: VMRESTORE_SITE=%s is not a mounted file", site)
	} else if _, err := catalog.LoadFile(mounts["api"][site]); err != nil {
		t.Errorf("api: the mounted site file does not load: %v", err)
	}
	metricsPort := port(t, def.MetricsAddr)
	if a := worker.Environment["VMRESTORE_METRICS_ADDR"]; a != "" && port(t, a) != metricsPort {
		t.Errorf("worker metrics on %s, not the default port %d", a, metricsPort)
	}
	if !slices.Contains(worker.Expose, strconv.Itoa(metricsPort)) {
		t.Errorf("worker exposes %v, want %d", worker.Expose, metricsPort)
	}
	if worker.ContainerName != "" || len(worker.Ports) > 0 {
		t.Errorf("worker has a container name or host ports: it could not be scaled (--scale worker=3)")
	}
	shutdown := def.ShutdownTimeout
	if v := worker.Environment["VMRESTORE_SHUTDOWN_TIMEOUT"]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatal(err)
		}
		shutdown = d
	}
	if grace, err := time.ParseDuration(worker.StopGrace); err != nil || grace <= shutdown {
		t.Errorf("worker stop_grace_period %q must be longer than its shutdown timeout %s", worker.StopGrace, shutdown)
	}
	redis := c.Services["redis"]
	if cmd := fmt.Sprint(redis.Command); !strings.Contains(cmd, "--appendonly yes") || redis.Healthcheck == nil {
		t.Errorf("redis must run with --appendonly yes and a health check: %s", cmd)
	}
	for _, name := range []string{"api", "worker"} {
		if !strings.Contains(fmt.Sprint(c.Services[name].DependsOn), "service_healthy") {
			t.Errorf("%s should wait for a healthy redis", name)
		}
		if c.Services[name].Environment["REDIS_ADDR"] != "redis:6379" {
			t.Errorf("%s: REDIS_ADDR is %q", name, c.Services[name].Environment["REDIS_ADDR"])
		}
	}

	// Prometheus: its configuration is mounted, scrapes the api and worker ports, and loads
	// the rules.
	promDir := mounts["prometheus"]["/etc/prometheus"]
	if promDir == "" || !strings.Contains(fmt.Sprint(c.Services["prometheus"].Command), "--config.file=/etc/prometheus/prometheus.yml") {
		t.Fatalf("prometheus must mount deploy/prometheus at /etc/prometheus and use its prometheus.yml")
	}
	var pc struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
			DNSSDConfigs []struct {
				Names []string `yaml:"names"`
				Port  int      `yaml:"port"`
			} `yaml:"dns_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, filepath.Join(promDir, "prometheus.yml"), &pc)
	for _, rf := range pc.RuleFiles {
		if m, _ := filepath.Glob(filepath.Join(promDir, rf)); len(m) == 0 {
			t.Errorf("prometheus.yml: rule_files %s matches nothing", rf)
		}
	}
	jobs := map[string]string{}
	for _, sc := range pc.ScrapeConfigs {
		for _, s := range sc.StaticConfigs {
			jobs[sc.JobName] = strings.Join(s.Targets, ",")
		}
		for _, d := range sc.DNSSDConfigs {
			jobs[sc.JobName] = fmt.Sprintf("%s:%d", strings.Join(d.Names, ","), d.Port)
		}
	}
	if want := fmt.Sprintf("api:%d", apiPort); jobs["vmrestore-api"] != want {
		t.Errorf("prometheus scrapes vmrestore-api at %q, want %s", jobs["vmrestore-api"], want)
	}
	if want := fmt.Sprintf("worker:%d", metricsPort); jobs["vmrestore-worker"] != want {
		t.Errorf("prometheus scrapes vmrestore-worker at %q, want %s (every replica, through DNS)", jobs["vmrestore-worker"], want)
	}

	// Grafana: provisioning mounted, the dashboard provider's path is the mounted dashboards
	// folder, the data source is the compose Prometheus.
	prov := mounts["grafana"]["/etc/grafana/provisioning"]
	if prov == "" {
		t.Fatal("grafana must mount the provisioning folder at /etc/grafana/provisioning")
	}
	var providers struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, filepath.Join(prov, "dashboards", "vmrestore.yml"), &providers)
	if len(providers.Providers) != 1 {
		t.Fatalf("want one dashboard provider, got %d", len(providers.Providers))
	}
	dashDir := mounts["grafana"][providers.Providers[0].Options.Path]
	if files, _ := filepath.Glob(filepath.Join(dashDir, "*.json")); dashDir == "" || len(files) < 4 {
		t.Errorf("the dashboard provider reads %s, which is not a mounted folder of dashboards", providers.Providers[0].Options.Path)
	}
	var ds struct {
		Datasources []struct {
			UID, Type, URL string
		} `yaml:"datasources"`
	}
	readYAML(t, filepath.Join(prov, "datasources", "prometheus.yml"), &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL != "http://prometheus:9090" {
		t.Errorf("the provisioned data source must be the compose Prometheus: %+v", ds.Datasources)
	}
}

// obj is one Kubernetes object, read generically.
type obj map[string]any

func (o obj) get(path ...string) any {
	var cur any = map[string]any(o)
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

func (o obj) str(path ...string) string { s, _ := o.get(path...).(string); return s }

func (o obj) list(path ...string) []obj {
	raw, _ := o.get(path...).([]any)
	var out []obj
	for _, r := range raw {
		if m, ok := r.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func (o obj) labels(path ...string) map[string]string {
	raw, _ := o.get(path...).(map[string]any)
	out := map[string]string{}
	for k, v := range raw {
		out[k] = fmt.Sprint(v)
	}
	return out
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestKubernetesManifests(t *testing.T) {
	root := RepoRoot(t)
	dir := filepath.Join(root, "deploy", "k8s")
	def := defaults(t)
	env := knownEnv()
	stages := dockerStages(t, root)
	var k struct {
		Namespace          string   `yaml:"namespace"`
		Resources          []string `yaml:"resources"`
		ConfigMapGenerator []struct {
			Name  string   `yaml:"name"`
			Files []string `yaml:"files"`
		} `yaml:"configMapGenerator"`
		Images []struct {
			Name, NewName, NewTag string
		} `yaml:"images"`
	}
	readYAML(t, filepath.Join(dir, "kustomization.yaml"), &k)
	if k.Namespace != "vmrestore" {
		t.Errorf("namespace %q, want vmrestore", k.Namespace)
	}
	byKind := map[string]map[string]obj{}
	for _, r := range k.Resources {
		for _, d := range readDocs(t, filepath.Join(dir, r)) {
			o := obj(d)
			kind, name := o.str("kind"), o.str("metadata", "name")
			if kind == "" || name == "" || o.str("apiVersion") == "" {
				t.Errorf("%s: an object without apiVersion, kind or name", r)
				continue
			}
			if byKind[kind] == nil {
				byKind[kind] = map[string]obj{}
			}
			byKind[kind][name] = o
		}
	}
	configMaps := map[string][]string{}
	for _, g := range k.ConfigMapGenerator {
		for _, f := range g.Files {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				t.Errorf("configMapGenerator %s: %v", g.Name, err)
			}
			configMaps[g.Name] = append(configMaps[g.Name], filepath.Base(f))
		}
	}
	site, err := catalog.LoadFile(filepath.Join(dir, "site.yaml"))
	if err != nil {
		t.Fatalf("deploy/k8s/site.yaml: %v", err)
	}
	images := map[string]bool{}
	for _, i := range k.Images {
		images[i.Name] = true
	}

	for _, want := range []struct {
		name, component, addrEnv string
		defPort                  int
	}{{"vmrestore-api", "api", "VMRESTORE_HTTP_ADDR", port(t, def.HTTPAddr)}, {"vmrestore-worker", "worker", "VMRESTORE_METRICS_ADDR", port(t, def.MetricsAddr)}} {
		d := byKind["Deployment"][want.name]
		if d == nil {
			t.Errorf("no Deployment %s", want.name)
			continue
		}
		podLabels := d.labels("spec", "template", "metadata", "labels")
		if !selects(d.labels("spec", "selector", "matchLabels"), podLabels) {
			t.Errorf("%s: its selector does not select its pods", want.name)
		}
		spec := obj(d.get("spec", "template", "spec").(map[string]any))
		if spec.get("securityContext", "runAsNonRoot") != true {
			t.Errorf("%s: the pod must set runAsNonRoot", want.name)
		}
		containers := spec.list("containers")
		if len(containers) != 1 {
			t.Fatalf("%s: want one container", want.name)
		}
		c := containers[0]
		if img := c.str("image"); !images[img] || stages[strings.TrimPrefix(img, "vmrestore-")] == nil {
			t.Errorf("%s: image %q is not one the Dockerfile builds (target %s) and the kustomization names", want.name, img, want.component)
		}
		if c.get("securityContext", "allowPrivilegeEscalation") != false || c.get("securityContext", "readOnlyRootFilesystem") != true {
			t.Errorf("%s: the container must forbid privilege escalation and have a read-only root", want.name)
		}
		if c.get("resources", "requests") == nil || c.get("resources", "limits") == nil {
			t.Errorf("%s: resources requests and limits must be set", want.name)
		}
		vars := map[string]string{}
		for _, e := range c.list("env") {
			n := e.str("name")
			if !env[n] {
				t.Errorf("%s: environment variable %s is not read by vmrestore", want.name, n)
			}
			vars[n] = e.str("value")
		}
		listen := want.defPort
		if a := vars[want.addrEnv]; a != "" {
			listen = port(t, a)
		}
		if listen != want.defPort {
			t.Errorf("%s: listens on %d, not the default port %d", want.name, listen, want.defPort)
		}
		ports := map[string]int{}
		for _, p := range c.list("ports") {
			ports[p.str("name")] = p.get("containerPort").(int)
		}
		for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
			p := c.str(probe, "httpGet", "port")
			if c.str(probe, "httpGet", "path") != path || ports[p] != listen {
				t.Errorf("%s: %s must GET %s on port %d", want.name, probe, path, listen)
			}
		}
		grace, _ := spec.get("terminationGracePeriodSeconds").(int)
		if want.component == "worker" {
			shutdown := def.ShutdownTimeout
			if v := vars["VMRESTORE_SHUTDOWN_TIMEOUT"]; v != "" {
				if shutdown, err = time.ParseDuration(v); err != nil {
					t.Fatal(err)
				}
			}
			if time.Duration(grace)*time.Second <= shutdown {
				t.Errorf("worker: terminationGracePeriodSeconds %d must exceed its shutdown timeout %s", grace, shutdown)
			}
		} else if grace <= 15 {
			t.Errorf("api: terminationGracePeriodSeconds %d must exceed its 15 s drain", grace)
		}
		// Volumes: claims and config maps exist; the site file and storage urls are mounted.
		volumes := map[string]obj{}
		for _, v := range spec.list("volumes") {
			volumes[v.str("name")] = v
			if claim := v.str("persistentVolumeClaim", "claimName"); claim != "" && byKind["PersistentVolumeClaim"][claim] == nil {
				t.Errorf("%s: volume %s claims %s, which is not defined", want.name, v.str("name"), claim)
			}
			if cm := v.str("configMap", "name"); cm != "" && configMaps[cm] == nil {
				t.Errorf("%s: volume %s uses ConfigMap %s, which is not generated", want.name, v.str("name"), cm)
			}
		}
		mounted := func(path string) (obj, bool) {
			for _, m := range c.list("volumeMounts") {
				if mp := m.str("mountPath"); path == mp || strings.HasPrefix(path, mp+"/") {
					return volumes[m.str("name")], true
				}
			}
			return nil, false
		}
		if want.component == "api" {
			v, ok := mounted(vars["VMRESTORE_SITE"])
			if !ok || !slices.Contains(configMaps[v.str("configMap", "name")], filepath.Base(vars["VMRESTORE_SITE"])) {
				t.Errorf("api: VMRESTORE_SITE=%s is not a file of a mounted ConfigMap", vars["VMRESTORE_SITE"])
			}
		} else {
			var urls []string
			for _, ps := range site.PrimaryStorages {
				urls = append(urls, ps.URL)
			}
			for _, bs := range site.BackupStorages {
				urls = append(urls, bs.URL)
			}
			for _, u := range urls {
				if _, ok := mounted(u); !ok {
					t.Errorf("worker: the site's storage %s is not under a mounted volume", u)
				}
			}
		}
		// A PodDisruptionBudget covers the pods.
		covered := false
		for _, pdb := range byKind["PodDisruptionBudget"] {
			covered = covered || selects(pdb.labels("spec", "selector", "matchLabels"), podLabels)
		}
		if !covered {
			t.Errorf("%s: no PodDisruptionBudget selects its pods", want.name)
		}
	}

	// Services select pods and name ports those pods have; the Prometheus configuration's
	// DNS names are headless Services on the right ports.
	pods := map[string]obj{}
	for _, kind := range []string{"Deployment", "StatefulSet"} {
		for name, o := range byKind[kind] {
			pods[name] = o
		}
	}
	for name, svc := range byKind["Service"] {
		found := false
		for _, p := range pods {
			if !selects(svc.labels("spec", "selector"), p.labels("spec", "template", "metadata", "labels")) {
				continue
			}
			found = true
			cports := map[string]bool{}
			for _, c := range obj(p.get("spec", "template", "spec").(map[string]any)).list("containers") {
				for _, cp := range c.list("ports") {
					cports[cp.str("name")] = true
				}
			}
			for _, sp := range svc.list("spec", "ports") {
				if tp := sp.str("targetPort"); tp != "" && !cports[tp] {
					t.Errorf("Service %s: targetPort %s is not a port of its pods", name, tp)
				}
			}
		}
		if !found {
			t.Errorf("Service %s selects no pods", name)
		}
	}
	var pc struct {
		ScrapeConfigs []struct {
			JobName      string `yaml:"job_name"`
			DNSSDConfigs []struct {
				Names []string `yaml:"names"`
				Port  int      `yaml:"port"`
			} `yaml:"dns_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, filepath.Join(root, "deploy", "prometheus", "kubernetes.yml"), &pc)
	if len(pc.ScrapeConfigs) != 2 {
		t.Fatalf("kubernetes.yml: want the vmrestore-api and vmrestore-worker jobs")
	}
	for _, sc := range pc.ScrapeConfigs {
		for _, d := range sc.DNSSDConfigs {
			for _, n := range d.Names {
				svcName, ns, _ := strings.Cut(n, ".")
				ns, _, _ = strings.Cut(ns, ".")
				svc := byKind["Service"][svcName]
				if svc == nil || ns != k.Namespace || svc.str("spec", "clusterIP") != "None" {
					t.Errorf("kubernetes.yml: %s is not a headless Service of namespace %s", n, k.Namespace)
					continue
				}
				if p := svc.list("spec", "ports"); len(p) == 0 || p[0].get("port") != d.Port {
					t.Errorf("kubernetes.yml: job %s scrapes port %d, Service %s serves %v", sc.JobName, d.Port, svcName, p)
				}
			}
		}
	}

	redis := byKind["StatefulSet"]["redis"]
	if redis == nil || redis.get("spec", "volumeClaimTemplates") == nil {
		t.Fatal("no redis StatefulSet with a volume claim")
	}
	args := fmt.Sprint(obj(redis.get("spec", "template", "spec").(map[string]any)).list("containers")[0].get("args"))
	if !strings.Contains(args, "--appendonly yes") {
		t.Errorf("redis must run with --appendonly yes: %s", args)
	}
	if img := obj(redis.get("spec", "template", "spec").(map[string]any)).list("containers")[0].str("image"); !pinned(img) {
		t.Errorf("redis image %q is not pinned", img)
	}
}

func TestDashboardsWellFormed(t *testing.T) {
	root := RepoRoot(t)
	files, _ := filepath.Glob(filepath.Join(root, "dashboards", "*.json"))
	if len(files) < 4 {
		t.Fatalf("want the overview, stages, storage and api dashboards, found %d", len(files))
	}
	uids := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			UID        string  `json:"uid"`
			Title      string  `json:"title"`
			Panels     []panel `json:"panels"`
			Templating struct {
				List []struct{ Name, Type, Query string } `json:"list"`
			} `json:"templating"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		name := filepath.Base(f)
		if d.UID == "" || d.Title == "" || uids[d.UID] {
			t.Errorf("%s: missing or repeated uid or title", name)
		}
		uids[d.UID] = true
		if len(d.Templating.List) == 0 || d.Templating.List[0].Type != "datasource" || d.Templating.List[0].Query != "prometheus" {
			t.Errorf("%s: the first variable must be the Prometheus data source", name)
		}
		ids := map[int]bool{}
		for i, p := range d.Panels {
			for _, q := range d.Panels[:i] {
				if p.GridPos != nil && q.GridPos != nil && p.GridPos.X < q.GridPos.X+q.GridPos.W && q.GridPos.X < p.GridPos.X+p.GridPos.W &&
					p.GridPos.Y < q.GridPos.Y+q.GridPos.H && q.GridPos.Y < p.GridPos.Y+p.GridPos.H {
					t.Errorf("%s: panels %q and %q overlap", name, p.Title, q.Title)
				}
			}
			if ids[p.ID] {
				t.Errorf("%s: panel id %d repeated", name, p.ID)
			}
			ids[p.ID] = true
			if p.GridPos == nil || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.W <= 0 {
				t.Errorf("%s: panel %q has no valid gridPos", name, p.Title)
			}
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
				t.Errorf("%s: panel %q must query the ${datasource} variable", name, p.Title)
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				if tg.RefID == "" || refs[tg.RefID] || tg.Expr == "" {
					t.Errorf("%s: panel %q has a target without expr or with a repeated refId", name, p.Title)
				}
				refs[tg.RefID] = true
			}
		}
	}
}

func TestPromtool(t *testing.T) {
	_, promtool := NeedPrometheus(t)
	dir := filepath.Join(RepoRoot(t), "deploy", "prometheus")
	for _, args := range [][]string{
		{"check", "config", "prometheus.yml"},
		{"check", "config", "kubernetes.yml"},
	} {
		Promtool(t, promtool, dir, args...)
	}
	rules, _ := filepath.Glob(filepath.Join(dir, "rules", "*.yml"))
	tests, _ := filepath.Glob(filepath.Join(dir, "tests", "*.yml"))
	if len(rules) == 0 || len(tests) == 0 {
		t.Fatal("no rule files or no rule tests")
	}
	out := Promtool(t, promtool, dir, append([]string{"check", "rules"}, rules...)...)
	t.Logf("promtool check rules: %s", strings.Join(strings.Fields(out), " "))
	out = Promtool(t, promtool, dir, append([]string{"test", "rules"}, tests...)...)
	t.Logf("promtool test rules: %s", strings.Join(strings.Fields(out), " "))
}
