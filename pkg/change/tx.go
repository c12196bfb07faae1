package change

import "time"

// Tx describes one committed source transaction.
//
// EndLSN is the position to resume from and to acknowledge: the end of the
// commit record. CommitLSN is the start of the commit record; acknowledging it
// instead of EndLSN would make the server re-send the transaction.
type Tx struct {
	// XID is the source transaction id.
	XID uint32
	// FinalLSN is the commit LSN announced by the Begin message.
	FinalLSN LSN
	// CommitLSN is the LSN of the commit record (Commit message's CommitLSN).
	CommitLSN LSN
	// EndLSN is the end of the commit record (Commit message's TransactionEndLSN).
	EndLSN LSN
	// CommitTime is the commit timestamp on the source.
	CommitTime time.Time
	// Origin is the replication origin name the transaction came from, if any
	// (an Origin message). Empty for local transactions.
	Origin string
}
