//go:build race

package faulttest

// rssScale widens the RSS bound when the race detector instruments the
// bridge instances (this test binary re-run), which costs several times the
// memory of the production build.
const rssScale = 6
