package check

import "fmt"

// maxViolations caps the violations one checker reports: a systematic bug
// breaks the same rule thousands of times, and the first few say it all.
const maxViolations = 25

// report collects one checker's violations up to maxViolations and counts
// the rest.
type report struct {
	check   string
	list    []Violation
	dropped int
}

func (r *report) addf(format string, args ...any) {
	if len(r.list) >= maxViolations {
		r.dropped++
		return
	}
	r.list = append(r.list, Violation{Check: r.check, Detail: fmt.Sprintf(format, args...)})
}

func (r *report) violations() []Violation {
	if r.dropped > 0 {
		return append(r.list, Violation{Check: r.check, Detail: fmt.Sprintf("and %d more violations", r.dropped)})
	}
	return r.list
}
