package webhook

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/dvrelay/dvrelay/internal/event"
)

// The stage policy. Dataverse posts from whichever stage a step is registered in, and only a
// PostOperation (40) event describes a change the platform has written; a PreValidation (10) or
// PreOperation (20) event may describe one that a later plug-in, a validation or a rollback
// undoes. Config.AcceptStages names the stages whose events are queued. What happens to the
// others depends on what an answer costs the sender:
//
//   - a synchronous step (Mode 0) runs while the user waits, and any answer but 2xx fails the
//     user's save. Such an event is answered 200, not queued, and logged: refusing it would turn
//     a registration mistake into an outage of every save of that table.
//   - an asynchronous step (Mode 1) runs in a system job, which a 4xx marks Failed, with the
//     answer, where an administrator looks. Such an event is answered 422. (Dataverse runs
//     asynchronous steps only at 40, so this happens when 40 itself is not accepted.)
//   - an event that does not say its mode is treated as synchronous; one that does not say its
//     stage (the compact plugin event) is queued.
//
// Whatever the verdict, the first event of each step from stage 10 or 20 logs one warning
// naming the step, so the registration can be fixed.

// stageVerdict is what the intake does with an event, by its stage.
type stageVerdict int

const (
	stageQueue  stageVerdict = iota // an accepted stage, or none said
	stageDrop                       // answer 200 without queueing: a synchronous step
	stageRefuse                     // answer 422: an asynchronous step
)

func (v stageVerdict) String() string {
	switch v {
	case stageDrop:
		return "answered 200 and not queued (the step is synchronous: refusing it would fail the user's save)"
	case stageRefuse:
		return "refused with 422 (the step is asynchronous: its system job fails, visibly)"
	default:
		return "queued"
	}
}

// maxWarnedSteps bounds the steps the intake remembers having warned about. An organization
// registers a handful of webhook steps; a sender inventing step ids must not grow the set.
const maxWarnedSteps = 1024

// stagePolicy applies Config.AcceptStages. It is safe for concurrent use.
type stagePolicy struct {
	accept []int
	warned onceSet
}

func newStagePolicy(accept []int) *stagePolicy {
	if len(accept) == 0 {
		accept = []int{event.StagePostOperation}
	}
	return &stagePolicy{accept: slices.Clone(accept), warned: onceSet{max: maxWarnedSteps}}
}

func (p *stagePolicy) verdict(ev *event.Event) stageVerdict {
	switch {
	case ev.Stage == 0 || slices.Contains(p.accept, ev.Stage):
		return stageQueue
	case ev.Mode != nil && *ev.Mode == event.ModeAsynchronous:
		return stageRefuse
	default:
		return stageDrop
	}
}

// reason says why an event from ev's stage is not queued.
func (p *stagePolicy) reason(ev *event.Event) string {
	accepted := make([]string, len(p.accept))
	for i, s := range p.accept {
		accepted[i] = strconv.Itoa(s)
	}
	return fmt.Sprintf("stage %d (%s) is not one of the accepted stages %s (DVRELAY_ACCEPT_STAGES)",
		ev.Stage, event.StageName(ev.Stage), strings.Join(accepted, ", "))
}

// warnOnce logs, the first time a step posts from a stage before the commit, one warning naming
// it and what the intake does with its events.
func (p *stagePolicy) warnOnce(ctx context.Context, log *slog.Logger, ev *event.Event, v stageVerdict) {
	if ev.Stage != event.StagePreValidation && ev.Stage != event.StagePreOperation {
		return
	}
	if !p.warned.first(ev.StepID) {
		return
	}
	mode := "not said"
	if ev.Mode != nil {
		mode = event.ModeName(*ev.Mode)
	}
	log.LogAttrs(ctx, slog.LevelWarn, "webhook step posts before the change is committed",
		slog.String("stepId", ev.StepID),
		slog.String("stepName", ev.StepName),
		slog.Int("stage", ev.Stage),
		slog.String("stageName", event.StageName(ev.Stage)),
		slog.String("mode", mode),
		slog.String("message", ev.Message),
		slog.String("entity", ev.Entity),
		slog.String("action", v.String()),
		slog.String("fix", "register the step at PostOperation (40), asynchronous, so it reports committed changes only"),
	)
}

// onceSet answers, for each key, true the first time it is asked. It holds at most max keys;
// when full it forgets them all, so memory stays bounded and a flood of new keys costs at most
// one answer of true per key per max keys seen.
type onceSet struct {
	mu   sync.Mutex
	seen map[string]struct{}
	max  int
}

func (s *onceSet) first(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen[key]; ok {
		return false
	}
	if s.seen == nil || len(s.seen) >= s.max {
		s.seen = make(map[string]struct{})
	}
	s.seen[key] = struct{}{}
	return true
}
