//go:build !race

package e2e

// raceEnabled builds paddock with -race when the tests run with -race.
const raceEnabled = false
