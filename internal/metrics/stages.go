package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ExemplarLabel names the job uuid in exemplars. Exemplars are the one place a job uuid
// appears: they are not labels, so they do not create series, and they are only served
// when the scraper asks for OpenMetrics.
const ExemplarLabel = "job_uuid"

// exemplar returns the exemplar labels of a job, or nil when there is no uuid.
func exemplar(jobUUID string) prometheus.Labels {
	if jobUUID == "" {
		return nil
	}
	return prometheus.Labels{ExemplarLabel: jobUUID}
}

// observe records v on o with the job's exemplar when o supports exemplars.
func observe(o prometheus.Observer, v float64, jobUUID string) {
	if eo, ok := o.(prometheus.ExemplarObserver); ok && jobUUID != "" {
		eo.ObserveWithExemplar(v, exemplar(jobUUID))
		return
	}
	o.Observe(v)
}

// StartStage marks a job entering a pipeline stage in this process: the stage's in-flight
// gauge goes up and the stage counts for vmrestore_stage_oldest_running_seconds until the
// returned function is called. That function ends the stage and records its duration with
// the job uuid as exemplar; call it exactly once.
func (m *Metrics) StartStage(stage, jobUUID string) (end func()) {
	gauge := m.JobsInFlight.WithLabelValues(stage)
	gauge.Inc()
	start, id := m.stages.add(stage)
	var once sync.Once
	return func() {
		once.Do(func() {
			m.stages.remove(stage, id)
			gauge.Dec()
			observe(m.StageDuration.WithLabelValues(stage), time.Since(start).Seconds(), jobUUID)
		})
	}
}

// JobEnded counts a job's end in this process: vmrestore_jobs_total by outcome and ZStack
// error code (empty on success) and vmrestore_job_duration_seconds (creation to end) by
// outcome, both with the job uuid as exemplar.
func (m *Metrics) JobEnded(outcome, code, jobUUID string, d time.Duration) {
	c := m.Jobs.WithLabelValues(outcome, code)
	if ea, ok := c.(prometheus.ExemplarAdder); ok && jobUUID != "" {
		ea.AddWithExemplar(1, exemplar(jobUUID))
	} else {
		c.Inc()
	}
	observe(m.JobDuration.WithLabelValues(outcome), d.Seconds(), jobUUID)
}

// stageTracker knows when each running stage of this process started, for the age of the
// oldest one (a stage that never ends is what "stuck" means).
type stageTracker struct {
	desc   *prometheus.Desc
	stages []string // always exported, 0 when nothing runs
	now    func() time.Time

	mu      sync.Mutex
	next    uint64
	running map[string]map[uint64]time.Time
}

func newStageTracker(stages []string) *stageTracker {
	return &stageTracker{
		desc: prometheus.NewDesc("vmrestore_stage_oldest_running_seconds",
			"Age of the oldest pipeline stage still running in this process, by stage; 0 when none runs.",
			[]string{"stage"}, nil),
		stages:  stages,
		now:     time.Now,
		running: map[string]map[uint64]time.Time{},
	}
}

func (t *stageTracker) add(stage string) (time.Time, uint64) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.next++
	if t.running[stage] == nil {
		t.running[stage] = map[uint64]time.Time{}
	}
	t.running[stage][t.next] = now
	return now, t.next
}

func (t *stageTracker) remove(stage string, id uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.running[stage], id)
}

// oldest returns the age of the oldest running instance of each stage.
func (t *stageTracker) oldest() map[string]time.Duration {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]time.Duration, len(t.stages))
	for _, s := range t.stages {
		out[s] = 0
	}
	for s, runs := range t.running {
		var age time.Duration
		for _, start := range runs {
			age = max(age, now.Sub(start))
		}
		out[s] = age
	}
	return out
}

func (t *stageTracker) Describe(ch chan<- *prometheus.Desc) { ch <- t.desc }

func (t *stageTracker) Collect(ch chan<- prometheus.Metric) {
	for s, age := range t.oldest() {
		ch <- prometheus.MustNewConstMetric(t.desc, prometheus.GaugeValue, age.Seconds(), s)
	}
}
