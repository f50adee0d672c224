//go:build !race

package robust

// raceEnabled builds paddock with -race when the tests run with -race.
const raceEnabled = false
