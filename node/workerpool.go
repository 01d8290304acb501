package node

// workerPool runs the requests of one stream (a client's Batch stream, a
// peer's Stream) on reused goroutines: a request runs on an idle worker, on
// a new worker while there are fewer than batchWorkers, or else on a
// goroutine of its own, as a unary call would. A worker keeps its grown
// stack between requests, as gRPC's stream workers do (NumStreamWorkers in
// node.go). Only the stream's reader goroutine calls submit; stop, once the
// reader is done, ends the idle workers.
type workerPool struct {
	work    chan func() // to an idle worker
	workers int         // started; only the reader goroutine reads it
	done    chan struct{}
}

func newWorkerPool() workerPool {
	return workerPool{work: make(chan func()), done: make(chan struct{})}
}

// submit runs f.
func (p *workerPool) submit(f func()) {
	select {
	case p.work <- f:
		return
	default:
	}
	if p.workers < batchWorkers {
		p.workers++
		go p.worker(f)
		return
	}
	go f()
}

func (p *workerPool) worker(f func()) {
	for {
		f()
		select {
		case f = <-p.work:
		case <-p.done:
			return
		}
	}
}

// stop ends the workers once they finish what they run.
func (p *workerPool) stop() { close(p.done) }
