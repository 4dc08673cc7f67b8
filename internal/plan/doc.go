// Package plan runs bulk restore plans: many backup groups restored in one operation, in
// tiers, with a network mapping from the lost site to the recovery site, a concurrency cap,
// progress to the byte, cancel, pause, resume and retry of failed items, and dry runs that
// prove before a disaster that the recovery site is big enough.
//
// Every item of a plan becomes an ordinary restore job, built from the same ZStack request
// the single API takes and validated by the same rules. Tiers are strict: no item of tier
// N+1 starts before every item of tiers ≤ N has ended, because the point of a tier is that
// what comes later (the web tier) needs what came before (the databases) running; a
// priority alone would let a free worker start a web server next to a half-restored database.
package plan
