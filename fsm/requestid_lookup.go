package fsm

// HasRequestID reports whether the request id table remembers id: a
// command carrying it now would get the first result back (within
// RequestIDWindow of the first) instead of being applied. The leader of
// the web sessions uses it to let a retry through a lock someone else
// holds by now (node's websession.go).
func (f *FSM) HasRequestID(id []byte) bool {
	if len(id) == 0 || len(id) > MaxRequestIDLength {
		return false
	}
	var kb [maxRequestKeyLength]byte
	key := appendRequestKey(kb[:0], id)
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.requests.byID.get(string(key)) != nil
}
