// Package check holds the histories a robustness run records and the
// checkers that judge them: porcupine's linearizability check of the
// register znodes with a model of a versioned znode (writes whose outcome
// the client never learned may or may not have happened), and plain
// checks of sequential creates, session ephemerals, watch streams and
// the replicas' final state.
//
// A checker returns the violations it found; none means the history
// passed. Every checker has tests that feed it a broken history and show
// it fails.
package check
