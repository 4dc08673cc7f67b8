// Package walkthrough holds the test that runs docs/real-site.md, "From backups to a
// restored VM on a real site": every shell block of the page, in order, in one bash, against
// real binaries built by the page's own commands, a private Redis and free ports. The page
// cannot go stale without this test failing. The package has no code of its own.
package walkthrough
