// Package opsharness proves vmrestore's operations material against the real thing: it
// collects every PromQL expression of the Grafana dashboards (dashboards/*.json) and the
// Prometheus rules (deploy/prometheus/rules), runs a real Prometheus (Debian's prometheus
// package) that scrapes real api and worker processes, and checks that each expression
// parses, returns series, and names only metrics the processes export. Its tests also parse
// docker-compose.yml, the Dockerfile and the Kubernetes manifests and check that what they
// reference (files, build targets, ports, images) exists, and run promtool on the
// Prometheus configuration and rule unit tests.
//
// The helpers here are for those tests; nothing in the product imports this package.
package opsharness
