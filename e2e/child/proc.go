package child

import (
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Proc is a started child process whose end a goroutine waits for.
type Proc struct {
	Cmd  *exec.Cmd
	done chan struct{} // closed once the process has been waited for
	err  error         // Wait's error, set before done is closed
}

// Watch waits in the background for cmd, which has been started.
func Watch(cmd *exec.Cmd) *Proc {
	p := &Proc{Cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p
}

// Pid is the process's id.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is Wait's error once the process has ended.
func (p *Proc) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// ExitCode is the process's exit code once it has ended: -1 if a signal
// killed it.
func (p *Proc) ExitCode() int { return p.Cmd.ProcessState.ExitCode() }

// Wait waits up to d for the process to end and reports whether it did.
func (p *Proc) Wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		return false
	}
}

// Signal sends sig unless the process has ended.
func (p *Proc) Signal(sig os.Signal) error {
	if p.Exited() {
		return nil
	}
	return p.Cmd.Process.Signal(sig)
}

// Kill SIGKILLs the process (a stopped one too) unless it has ended, and
// waits for its end.
func (p *Proc) Kill() {
	_ = p.Signal(syscall.SIGKILL)
	<-p.done
}
