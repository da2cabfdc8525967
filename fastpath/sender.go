package fastpath

// runSender sends finished jobs through the mode's egress (sendmmsg
// batches on the loop's socket, or reinjection) and returns them to the
// free list. It stops when the server stops; sendq is never closed, so a
// signer finishing late never sends on a closed channel (the queue holds
// every job the loop owns, so that send never blocks either).
func (l *loop) runSender(tx *batch, stop <-chan struct{}) {
	defer l.s.wg.Done()
	var held [maxBatch]*job
	for {
		var j *job
		select {
		case <-stop:
			return
		case j = <-l.sendq:
		}
		n := 0
		for j != nil && n < maxBatch {
			if l.eg.sendJob(tx, j) {
				held[n] = j
				n++
			} else {
				mUnroutable.Inc()
				l.free <- j
			}
			select {
			case j = <-l.sendq:
			default:
				j = nil
			}
		}
		if j != nil { // batch full: keep it for the next round
			l.sendq <- j
		}
		tx.flush()
		for i := 0; i < n; i++ {
			l.hist.UpdateDuration(held[i].start)
			l.free <- held[i]
			held[i] = nil
		}
	}
}
