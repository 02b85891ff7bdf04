package containerworker

// warming is a program being started, or started, before its job: a node that
// has just run a program starts it again in each fresh worker, since the next job
// most often runs the same program (a user iterating on one). The process is a new
// one, so nothing of the last job's calls is in it; starting it ahead takes its
// start-up, the largest part of a small job's time on a node, off the job's path.
// Prewarming never crosses tenants: the program is the last job's tenant's, and
// only a job of that tenant takes it. (The node agent does not give a job of
// another tenant a worker that prewarmed at all, since the program's start-up ran
// in it; this check is the worker's own.)
type warming struct {
	path   string
	tenant string
	ready  chan struct{}
	p      *proc
	err    error
}

// Prewarm starts the program at path in worker mode, to be taken by the next job
// that runs it, if that job is tenant's. A program prewarmed earlier for another
// path or tenant is stopped.
func (w *Worker) Prewarm(path, tenant string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.warm != nil {
		if w.warm.path == path && w.warm.tenant == tenant {
			return
		}
		go w.warm.discard()
	}
	wm := &warming{path: path, tenant: tenant, ready: make(chan struct{})}
	w.warm = wm
	go func() {
		defer close(wm.ready)
		wm.p, wm.err = startProc(path, w.cfg.LogLimit, nil, w.share.memoryMB.Load)
		if wm.err != nil {
			w.log.Warn("could not prewarm program", "path", path, "error", wm.err)
		}
	}()
}

// takeWarm returns the program prewarmed for path and tenant, once it has started,
// or nil if there is none, or it failed to start (the caller starts it again, so
// that the error is the job's), or it has since died. A program prewarmed for
// another path or tenant is stopped.
func (w *Worker) takeWarm(path, tenant string) *proc {
	wm := w.unwarm()
	if wm == nil {
		return nil
	}
	if wm.path != path || wm.tenant != tenant {
		go wm.discard()
		return nil
	}
	<-wm.ready
	if wm.err != nil {
		return nil
	}
	if wm.p.exited() {
		wm.p.close()
		return nil
	}
	return wm.p
}

// dropWarm stops a prewarmed program, if any.
func (w *Worker) dropWarm() {
	if wm := w.unwarm(); wm != nil {
		wm.discard()
	}
}

// unwarm takes the prewarmed program, if any, from the worker.
func (w *Worker) unwarm() *warming {
	w.mu.Lock()
	defer w.mu.Unlock()
	wm := w.warm
	w.warm = nil
	return wm
}

func (wm *warming) discard() {
	<-wm.ready
	if wm.p != nil {
		wm.p.close()
	}
}
