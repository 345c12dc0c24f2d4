package local

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// statements are the ones every group commit, every Publish and every Receive runs, parsed once at Open:
// SQLite spends longer parsing and planning such a statement than running it. The write ones are
// prepared on the single writer connection and used in its transactions through tx.StmtContext,
// which reuses the parsed statement of the connection the transaction runs on.
type statements struct {
	// writer
	savepoint, release, rollbackTo *sql.Stmt
	forgetIDs, confirmID           *sql.Stmt
	remember, insertMessage        *sql.Stmt
	insertLocked                   *sql.Stmt
	copyExhausted, deleteExhausted *sql.Stmt
	releaseExpired                 *sql.Stmt
	lockDue                        *sql.Stmt
	checkLock, complete            *sql.Stmt
	deleteMessage                  *sql.Stmt
	markNewer                      *sql.Stmt
	historyAccepted, historyInsert *sql.Stmt
	// read pool
	nextAvailable *sql.Stmt

	all []*sql.Stmt
}

func prepareStatements(ctx context.Context, writer, readers *sql.DB) (*statements, error) {
	s := &statements{}
	for _, p := range []struct {
		stmt  **sql.Stmt
		db    *sql.DB
		query string
	}{
		{&s.savepoint, writer, `SAVEPOINT change`},
		{&s.release, writer, `RELEASE change`},
		{&s.rollbackTo, writer, `ROLLBACK TO change`},
		{&s.forgetIDs, writer, forgetIDsSQL},
		{&s.confirmID, writer, confirmIDSQL},
		{&s.remember, writer, rememberIDSQL},
		{&s.insertMessage, writer, insertMessageSQL()},
		{&s.insertLocked, writer, insertLockedSQL()},
		{&s.copyExhausted, writer, deadLetterCopySQL(lockExhausted, true)},
		{&s.deleteExhausted, writer, deleteExhaustedSQL},
		{&s.releaseExpired, writer, releaseExpiredSQL},
		{&s.lockDue, writer, lockDueSQL},
		{&s.checkLock, writer, checkLockSQL},
		{&s.complete, writer, completeSQL},
		{&s.deleteMessage, writer, `DELETE FROM messages WHERE seq = ?`},
		{&s.markNewer, writer, markNewerSQL},
		{&s.historyAccepted, writer, acceptedHistorySQL},
		{&s.historyInsert, writer, insertHistorySQL},
		{&s.nextAvailable, readers, nextAvailableSQL},
	} {
		stmt, err := p.db.PrepareContext(ctx, p.query)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("prepare %q: %w", p.query, err), s.close())
		}
		*p.stmt = stmt
		s.all = append(s.all, stmt)
	}
	return s, nil
}

func (s *statements) close() error {
	var errs []error
	for _, stmt := range s.all {
		errs = append(errs, stmt.Close())
	}
	return errors.Join(errs...)
}
