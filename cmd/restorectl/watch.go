package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/client"
)

// Timings of watch; variables so that tests can shorten them.
var (
	// pollEvery is how often a plan is polled once its event stream broke.
	pollEvery = 2 * time.Second
	// quietRefresh is how long the stream may stay silent (a paused plan sends nothing)
	// before the totals are read once by a poll.
	quietRefresh = 30 * time.Second
	// giveUpAfter is how long the api may stay unreachable before watch gives up.
	giveUpAfter = 2 * time.Minute
)

// maxListed bounds the failed items printed at the end and while running.
const maxListed = 100

func planEnded(state string) bool {
	return state == "succeeded" || state == "failed" || state == "cancelled"
}

// display shows a plan's progress while it is watched.
type display interface {
	update(rep *apiv1.PlanReport) // new totals (a report without items)
	item(it apiv1.ItemReport)     // an item changed
	note(format string, a ...any) // a message for the user
	finish(rep *apiv1.PlanReport) // the plan ended: draw the final state
	stop()                        // watching stopped early
}

// watch follows a plan until it ends, prints what did not succeed, and returns an exitCode
// 3 unless every item succeeded.
func (a *cli) watch(c *client.Client, uuid string, wo watchOptions) error {
	out := a.stdout
	if a.output != "table" {
		out = a.stderr // stdout carries the final report
	}
	rep, err := c.GetPlan(a.ctx, uuid, "none")
	if err != nil {
		return err
	}
	var d display
	if !wo.plain && isTerminal(out) {
		d = newBars(out, rep)
	} else {
		d = newLines(out, wo.interval)
	}
	d = &pauseHint{display: d, uuid: uuid}
	final, err := a.follow(c, uuid, rep, d)
	if err != nil {
		d.stop()
		if a.ctx.Err() != nil {
			fmt.Fprintf(a.stderr, "stopped watching; the plan goes on (restorectl plan watch %s)\n", uuid)
		}
		return err
	}
	d.finish(final)
	return a.summary(c, final, out)
}

// follow reads the event stream until the plan ends; when the stream breaks it polls.
func (a *cli) follow(c *client.Client, uuid string, rep *apiv1.PlanReport, d display) (*apiv1.PlanReport, error) {
	d.update(rep)
	if planEnded(rep.State) {
		return rep, nil
	}
	final, err := a.stream(c, uuid, d)
	if final != nil || a.ctx.Err() != nil {
		return final, err
	}
	var ae *client.APIError
	if errors.As(err, &ae) && ae.Code != nil && ae.Status >= 400 && ae.Status < 500 {
		return nil, err // not found, session: polling would fail the same way
	}
	d.note("the event stream broke (%v); polling every %s instead", err, pollEvery)
	return a.poll(c, uuid, d)
}

type streamResult struct {
	ev  client.Event
	err error
}

// stream follows the event stream. It returns the final report at the "end" event, or the
// error that broke the stream.
func (a *cli) stream(c *client.Client, uuid string, d display) (*apiv1.PlanReport, error) {
	s, err := c.PlanEvents(a.ctx, uuid)
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	defer s.Close()
	defer close(done)
	events := make(chan streamResult)
	go func() {
		for {
			ev, err := s.Next()
			select {
			case events <- streamResult{ev, err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	quiet := time.NewTimer(quietRefresh)
	defer quiet.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return nil, a.ctx.Err()
		case r := <-events:
			if r.err != nil {
				if errors.Is(r.err, client.ErrStreamClosed) {
					return nil, errors.New("the api closed it before the plan ended")
				}
				return nil, r.err
			}
			quiet.Reset(quietRefresh)
			switch r.ev.Name {
			case "progress", "end":
				rep := &apiv1.PlanReport{}
				if err := json.Unmarshal(r.ev.Data, rep); err != nil {
					return nil, fmt.Errorf("a %s event does not parse: %v", r.ev.Name, err)
				}
				d.update(rep)
				if r.ev.Name == "end" || planEnded(rep.State) {
					return rep, nil
				}
			case "item":
				var it apiv1.ItemReport
				if err := json.Unmarshal(r.ev.Data, &it); err != nil {
					return nil, fmt.Errorf("an item event does not parse: %v", err)
				}
				d.item(it)
			case "error":
				return nil, fmt.Errorf("the api reported an error: %s", strings.TrimSpace(string(r.ev.Data)))
			}
		case <-quiet.C:
			// A silent stream: a paused plan, or a connection that died without a word.
			rep, err := c.GetPlan(a.ctx, uuid, "none")
			if err == nil {
				d.update(rep)
				if planEnded(rep.State) {
					return rep, nil
				}
			}
			quiet.Reset(quietRefresh)
		}
	}
}

// poll reads the plan's totals every pollEvery until it ends. An unreachable api is retried
// for giveUpAfter.
func (a *cli) poll(c *client.Client, uuid string, d display) (*apiv1.PlanReport, error) {
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	var failingSince time.Time
	for {
		select {
		case <-a.ctx.Done():
			return nil, a.ctx.Err()
		case <-t.C:
		}
		rep, err := c.GetPlan(a.ctx, uuid, "none")
		if err != nil {
			var ne *client.NetworkError
			if !errors.As(err, &ne) || a.ctx.Err() != nil {
				return nil, err
			}
			if failingSince.IsZero() {
				failingSince = time.Now()
				d.note("cannot reach the api (%v); retrying for up to %s", err, giveUpAfter)
			} else if time.Since(failingSince) > giveUpAfter {
				return nil, err
			}
			continue
		}
		if !failingSince.IsZero() {
			d.note("the api answers again")
			failingSince = time.Time{}
		}
		d.update(rep)
		if planEnded(rep.State) {
			return rep, nil
		}
	}
}

// summary prints how the plan ended and every item that did not succeed, and returns
// exit code 3 unless the plan succeeded.
func (a *cli) summary(c *client.Client, final *apiv1.PlanReport, out io.Writer) error {
	var bad []apiv1.ItemReport
	for _, state := range []string{"failed", "cancelled"} {
		if final.Counts[state] == 0 {
			continue
		}
		rep, err := c.GetPlan(a.ctx, final.UUID, state)
		if err != nil {
			return err
		}
		bad = append(bad, rep.Items...)
	}
	took := ""
	if final.FinishedAt != nil {
		took = " in " + durationText(final.FinishedAt.Sub(final.CreatedAt))
	}
	rest := ""
	if final.Counts["succeeded"] != final.ItemCount {
		others := map[string]int{}
		for s, n := range final.Counts {
			if s != "succeeded" {
				others[s] = n
			}
		}
		rest = " (" + countsText(others) + ")"
	}
	fmt.Fprintf(out, "plan %s (%s) %s: %d/%d VM(s) succeeded%s; %s of backup data restored (%s virtual)%s\n", final.UUID, final.Name, final.State,
		final.Counts["succeeded"], final.ItemCount, rest, bytesText(final.BytesDone), bytesText(final.VirtualBytesDone), took)
	if final.Reason != "" && final.State != "succeeded" {
		fmt.Fprintf(out, "reason: %s\n", final.Reason)
	}
	if len(bad) > 0 {
		fmt.Fprintln(out, "Items that did not succeed:")
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  INDEX\tTIER\tNAME\tGROUP\tSTATE\tJOB\tREASON")
		for i, it := range bad {
			if i == maxListed {
				fmt.Fprintf(tw, "  … and %d more: restorectl plan get %s --items failed\n", len(bad)-maxListed, final.UUID)
				break
			}
			fmt.Fprintf(tw, "  %d\t%d\t%s\t%s\t%s\t%s\t%s\n", it.Index, it.Tier, it.Name, it.GroupUUID, it.State, dash(it.JobUUID),
				oneLine(it.ErrorCode+": "+it.Error))
		}
		tw.Flush()
		fmt.Fprintf(out, "retry them: restorectl plan retry %s --watch\n", final.UUID)
	}
	if a.output != "table" {
		full, err := c.GetPlan(a.ctx, final.UUID, "all")
		if err != nil {
			return err
		}
		if err := a.print(full, nil); err != nil {
			return err
		}
	}
	if final.State != "succeeded" {
		return &exitCode{code: exitPlanFailed}
	}
	return nil
}

// pauseHint tells the user, when the plan becomes paused, that it waits for them.
type pauseHint struct {
	display
	uuid, state string
}

func (h *pauseHint) update(rep *apiv1.PlanReport) {
	h.display.update(rep)
	if rep.State == h.state {
		return
	}
	h.state = rep.State
	if rep.State == "paused" {
		reason := ""
		if rep.Reason != "" {
			reason = " (" + rep.Reason + ")"
		}
		h.note("the plan is paused%s: it starts no item until `restorectl plan resume %s` (or retry, or cancel); still watching", reason, h.uuid)
	}
}

// progressLine is the plain progress of a plan, on one line.
func progressLine(rep *apiv1.PlanReport) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  VMs %d/%d (%s)", rep.State, ended(rep.Counts), rep.ItemCount, countsText(rep.Counts))
	pct := 0.0
	if rep.BytesTotal > 0 {
		pct = 100 * float64(rep.BytesDone) / float64(rep.BytesTotal)
	}
	fmt.Fprintf(&b, "  data %s/%s (%.0f%%; virtual %s)", bytesText(rep.BytesDone), bytesText(rep.BytesTotal), pct, bytesText(rep.VirtualBytesTotal))
	if !planEnded(rep.State) {
		fmt.Fprintf(&b, "  %s  ETA %s", rateText(rep.ThroughputBytesPerSecond), etaText(rep.EtaSeconds))
	}
	if len(rep.Tiers) > 1 {
		var tiers []string
		for _, t := range rep.Tiers {
			total := 0
			for _, n := range t.Counts {
				total += n
			}
			tiers = append(tiers, fmt.Sprintf("tier %d %d/%d", t.Tier, ended(t.Counts), total))
		}
		fmt.Fprintf(&b, "  [%s]", strings.Join(tiers, ", "))
	}
	return b.String()
}

// lines prints progress lines: for logs and pipes, where bars would be noise.
type lines struct {
	w         io.Writer
	interval  time.Duration
	last      time.Time
	lastText  string
	lastState string
	failures  int
	now       func() time.Time
}

func newLines(w io.Writer, interval time.Duration) *lines {
	return &lines{w: w, interval: interval, now: time.Now}
}

func (l *lines) printf(format string, a ...any) {
	fmt.Fprintf(l.w, "%s %s\n", l.now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

func (l *lines) update(rep *apiv1.PlanReport) {
	text := progressLine(rep)
	now := l.now()
	first := l.last.IsZero()
	if text == l.lastText || (!first && rep.State == l.lastState && now.Sub(l.last) < l.interval) {
		return
	}
	if first {
		l.printf("plan %s (%s)", rep.UUID, rep.Name)
	}
	l.printf("%s", text)
	l.last, l.lastText, l.lastState = now, text, rep.State
}

func (l *lines) item(it apiv1.ItemReport) {
	if it.State != "failed" {
		return
	}
	l.failures++
	switch {
	case l.failures <= maxListed:
		l.printf("item %d %s failed: %s", it.Index, it.Name, oneLine(it.ErrorCode+": "+it.Error))
	case l.failures == maxListed+1:
		l.printf("more items failed; all are listed at the end")
	}
}

func (l *lines) note(format string, a ...any) { l.printf(format, a...) }

func (l *lines) finish(rep *apiv1.PlanReport) {
	text := progressLine(rep)
	if text != l.lastText {
		l.printf("%s", text)
	}
}

func (l *lines) stop() {}

// bars draws a progress bar per tier and one for the whole plan, on a terminal.
type bars struct {
	mu       sync.Mutex
	rep      *apiv1.PlanReport
	p        *mpb.Progress
	tiers    map[int]*mpb.Bar
	all      *mpb.Bar
	failures int
}

// barScale is the resolution of a bar: progress is drawn in thousandths.
const barScale = 1000

func newBars(w io.Writer, rep *apiv1.PlanReport, opts ...mpb.ContainerOption) *bars {
	b := &bars{rep: rep, tiers: map[int]*mpb.Bar{}}
	opts = append([]mpb.ContainerOption{mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithRefreshRate(200 * time.Millisecond)}, opts...)
	b.p = mpb.New(opts...)
	fmt.Fprintf(b.p, "plan %s (%s)\n", rep.UUID, rep.Name)
	for _, t := range rep.Tiers {
		tier := t.Tier
		b.tiers[tier] = b.p.AddBar(barScale,
			mpb.PrependDecorators(decor.Name(fmt.Sprintf("tier %d", tier), decor.WC{W: 9, C: decor.DindentRight})),
			mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return b.tierText(tier) })))
	}
	b.all = b.p.AddBar(barScale,
		mpb.PrependDecorators(decor.Name("all", decor.WC{W: 9, C: decor.DindentRight})),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return b.allText() })))
	b.draw()
	return b
}

func fraction(done, total int64, endedItems, items int) int64 {
	switch {
	case total > 0:
		return min(barScale, done*barScale/total)
	case items > 0:
		return int64(endedItems * barScale / items)
	}
	return 0
}

func (b *bars) tierText(tier int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, t := range b.rep.Tiers {
		if t.Tier != tier {
			continue
		}
		total := 0
		for _, n := range t.Counts {
			total += n
		}
		s := fmt.Sprintf(" %d/%d VMs  data %s/%s", ended(t.Counts), total, bytesText(t.BytesDone), bytesText(t.BytesTotal))
		if n := t.Counts["running"]; n > 0 {
			s += fmt.Sprintf("  %d running", n)
		}
		if n := t.Counts["failed"]; n > 0 {
			s += fmt.Sprintf("  %d failed", n)
		}
		return s
	}
	return ""
}

func (b *bars) allText() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.rep
	s := fmt.Sprintf(" %d/%d VMs  data %s/%s  %s  ETA %s  %s", ended(r.Counts), r.ItemCount, bytesText(r.BytesDone), bytesText(r.BytesTotal),
		rateText(r.ThroughputBytesPerSecond), etaText(r.EtaSeconds), r.State)
	if n := r.Counts["failed"]; n > 0 {
		s += fmt.Sprintf(" (%d failed)", n)
	}
	return s
}

// draw moves the bars to the current report.
func (b *bars) draw() {
	b.mu.Lock()
	r := b.rep
	b.mu.Unlock()
	for _, t := range r.Tiers {
		if bar := b.tiers[t.Tier]; bar != nil {
			total := 0
			for _, n := range t.Counts {
				total += n
			}
			bar.SetCurrent(fraction(t.BytesDone, t.BytesTotal, ended(t.Counts), total))
		}
	}
	b.all.SetCurrent(fraction(r.BytesDone, r.BytesTotal, ended(r.Counts), r.ItemCount))
}

func (b *bars) update(rep *apiv1.PlanReport) {
	b.mu.Lock()
	b.rep = rep
	b.mu.Unlock()
	b.draw()
}

func (b *bars) item(it apiv1.ItemReport) {
	if it.State != "failed" {
		return
	}
	b.failures++
	switch {
	case b.failures <= maxListed:
		fmt.Fprintf(b.p, "item %d %s failed: %s\n", it.Index, it.Name, oneLine(it.ErrorCode+": "+it.Error))
	case b.failures == maxListed+1:
		fmt.Fprintln(b.p, "more items failed; all are listed at the end")
	}
}

func (b *bars) note(format string, a ...any) {
	fmt.Fprintf(b.p, format+"\n", a...)
}

// finish completes the bars of tiers where everything succeeded and leaves the others
// where they stopped.
func (b *bars) finish(rep *apiv1.PlanReport) {
	b.update(rep)
	for _, t := range rep.Tiers {
		if bar := b.tiers[t.Tier]; bar != nil {
			if t.Counts["failed"]+t.Counts["cancelled"] == 0 {
				bar.SetTotal(barScale, true)
			} else {
				bar.Abort(false)
			}
		}
	}
	for _, bar := range b.tiers { // tiers the final report no longer names
		if !bar.Completed() && !bar.Aborted() {
			bar.Abort(false)
		}
	}
	if rep.State == "succeeded" {
		b.all.SetTotal(barScale, true)
	} else {
		b.all.Abort(false)
	}
	b.p.Wait()
}

func (b *bars) stop() {
	for _, bar := range b.tiers {
		bar.Abort(false)
	}
	b.all.Abort(false)
	b.p.Wait()
}
