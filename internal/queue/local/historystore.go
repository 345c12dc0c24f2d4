package local

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"sync"
	"time"

	"github.com/dvrelay/dvrelay/internal/config"
	"github.com/dvrelay/dvrelay/internal/queue"
)

const (
	historyFileName = "history.db"

	// historyReadConns is the size of the history's read pool: support's history lookups and the
	// console's charts, rarely more than one at a time.
	historyReadConns = 2
)

// historyStore is the events' history in its own file, history.db, beside queue.db, with its own
// writer connection and its own group-commit writer goroutine. The queue's writer is the limit
// of the whole intake; with the history beside it on a second connection, the two commit side by
// side, each on its own core, and the queue's transactions stay as small as the queue itself.
//
// The file runs in WAL mode at synchronous=NORMAL: a commit is in the log (the OS has it) when
// its callers are answered, but not fsynced. A killed process keeps every committed entry; a
// power loss may lose the last ones. That is the right trade for a support aid: the queue's own
// promises never wait for an fsync of the history, and a missing line never costs a redelivery.
type historyStore struct {
	log     *slog.Logger
	db      *sql.DB // the single writer connection
	readers *sql.DB // query_only read pool (see readOn)
	insert  *sql.Stmt

	now        func() time.Time
	maxAge     time.Duration
	maxEntries int
	maxBatch   int
	// beforeCommit runs on the writer goroutine before each batch; tests block in it to hold the
	// history writer.
	beforeCommit func()

	writes    chan *historyRequest
	closing   chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error

	// written counts the entries committed since the last prune. The writer goroutine alone
	// touches it.
	written int
}

// historyRequest is one caller's entries, waiting for the history writer.
type historyRequest struct {
	entries []queue.HistoryEntry
	done    chan error // buffered: the writer never waits for a caller that gave up
}

const insertHistorySQL = `INSERT INTO history
	(at, kind, event_id, message_id, record_id, correlation_id, entity, event_name, attempt, step, status, duration_ns, detail)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// openHistory opens (creating if needed) history.db in dir. Its writer goroutine runs once
// start is called: until then the writer connection is free for moveHistoryOut.
func openHistory(ctx context.Context, dir string, opts Options, log *slog.Logger) (*historyStore, error) {
	path := filepath.Join(dir, historyFileName)
	db, err := openHistoryWriter(path)
	if err != nil {
		return nil, err
	}
	if _, err := db.ExecContext(ctx, historySchema); err != nil {
		return nil, errors.Join(fmt.Errorf("create history schema in %s: %w", path, err), db.Close())
	}
	readers, err := openReaders(path, historyReadConns)
	if err != nil {
		return nil, errors.Join(err, db.Close())
	}
	insert, err := db.PrepareContext(ctx, insertHistorySQL)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("prepare history insert: %w", err), readers.Close(), db.Close())
	}
	maxAge, maxEntries := historyBounds(opts)
	return &historyStore{
		log: log, db: db, readers: readers, insert: insert,
		now: opts.Now, maxAge: maxAge, maxEntries: maxEntries, maxBatch: opts.maxBatch,
		beforeCommit: opts.beforeHistoryCommit,
		writes:       make(chan *historyRequest),
		closing:      make(chan struct{}),
		done:         make(chan struct{}),
	}, nil
}

// openHistoryWriter opens the history's single writer connection. One connection, as for the
// queue: the history's writes queue in Go, never on SQLITE_BUSY.
func openHistoryWriter(path string) (*sql.DB, error) {
	params := url.Values{}
	params.Add("_pragma", "busy_timeout(5000)")
	params.Add("_pragma", "journal_mode(WAL)")
	// No fsync per commit: see historyStore.
	params.Add("_pragma", "synchronous(NORMAL)")
	// The prune's statements sort and build temporary b-trees; in memory they cost no file writes.
	params.Add("_pragma", "temp_store(MEMORY)")
	params.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+params.Encode())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	return db, nil
}

// start runs the writer goroutine.
func (h *historyStore) start() { go h.writer() }

// write hands entries to the history writer and returns once the commit that holds them is done,
// or with ctx.Err() when ctx ends first (the entries may still land: the writer writes what it
// took whatever became of its caller, since each entry tells of something that did happen).
// After close it fails with ErrClosed.
func (h *historyStore) write(ctx context.Context, entries []queue.HistoryEntry) error {
	req := &historyRequest{entries: entries, done: make(chan error, 1)}
	select {
	case h.writes <- req:
	case <-ctx.Done():
		return ctx.Err()
	case <-h.closing:
		return ErrClosed
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writer is the only goroutine that writes the history. Like the queue's writer it takes every
// request waiting at that moment (up to maxBatch), commits them at once and answers each; it
// stops when the store closes and never leaves a request it has taken unanswered.
func (h *historyStore) writer() {
	defer close(h.done)
	batch := make([]*historyRequest, 0, h.maxBatch)
	for {
		select {
		case <-h.closing:
			return
		case req := <-h.writes:
			batch = append(batch[:0], req)
		}
	drain:
		for len(batch) < h.maxBatch {
			select {
			case req := <-h.writes:
				batch = append(batch, req)
			default:
				break drain
			}
		}
		err := h.commit(batch)
		for _, req := range batch {
			req.done <- err
		}
		clear(batch)
	}
}

// commit inserts every entry of batch in one transaction, pruning when due. The batch shares one
// outcome: an insert into a table with no constraint the entries could break fails only with the
// file itself, and then every entry of the batch fails alike.
func (h *historyStore) commit(batch []*historyRequest) error {
	if h.beforeCommit != nil {
		h.beforeCommit()
	}
	n := 0
	for _, req := range batch {
		n += len(req.entries)
	}
	if n == 0 {
		return nil
	}
	// The batch belongs to many callers, so no single caller's ctx may abort it.
	ctx := context.Background()
	due := h.written+n >= historyPruneEvery
	tx, err := h.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("history: begin: %w", err)
	}
	if err := h.insertAll(ctx, tx, batch); err != nil {
		return errors.Join(err, tx.Rollback())
	}
	if due {
		if err := h.prune(ctx, tx); err != nil {
			return errors.Join(err, tx.Rollback())
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("history: commit: %w", err)
	}
	if due {
		h.written = 0
	} else {
		h.written += n
	}
	return nil
}

func (h *historyStore) insertAll(ctx context.Context, tx *sql.Tx, batch []*historyRequest) error {
	insert := tx.StmtContext(ctx, h.insert)
	for _, req := range batch {
		for _, e := range req.entries {
			if _, err := insert.ExecContext(ctx, e.At.UnixNano(), e.Kind, e.EventID, e.MessageID, e.RecordID, e.CorrelationID,
				e.Entity, e.EventName, e.Attempt, e.Step, e.Status, e.Duration.Nanoseconds(), bounded(e.Detail)); err != nil {
				return fmt.Errorf("history: insert %s entry of %s: %w", e.Kind, e.MessageID, err)
			}
		}
	}
	return nil
}

// prune keeps the history within its age and count; it runs every historyPruneEvery entries, so
// it deletes at most about that many rows past the count bound and stays a small part of the
// commit it rides on.
func (h *historyStore) prune(ctx context.Context, tx *sql.Tx) error {
	oldest := h.now().UnixNano() - h.maxAge.Nanoseconds()
	// Entries are written in time order, so the old ones are at the front of the id order: look
	// at the first few thousand (no index on at to keep up on every insert) and past the count.
	if _, err := tx.ExecContext(ctx, `DELETE FROM history WHERE id IN (SELECT id FROM history ORDER BY id LIMIT ?) AND at < ?`,
		2*historyPruneEvery, oldest); err != nil {
		return fmt.Errorf("history: prune by age: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM history WHERE id <= (SELECT MAX(id) FROM history) - ?`, h.maxEntries); err != nil {
		return fmt.Errorf("history: prune by count: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM history_counts WHERE minute < ?`, oldest/int64(time.Minute)); err != nil {
		return fmt.Errorf("history: prune counts: %w", err)
	}
	return nil
}

// close stops the writer (after it has answered everything it took) and closes the file. Later
// writes fail with ErrClosed.
func (h *historyStore) close() error {
	h.closeOnce.Do(func() {
		close(h.closing)
		<-h.done
		h.closeErr = h.closeDB()
	})
	return h.closeErr
}

// closeDB closes the file's connections; for a store whose writer never ran.
func (h *historyStore) closeDB() error {
	return errors.Join(h.insert.Close(), h.readers.Close(), h.db.Close())
}

func historyBounds(opts Options) (time.Duration, int) {
	maxAge, maxEntries := opts.HistoryMaxAge, opts.HistoryMaxEntries
	if maxAge <= 0 {
		maxAge = config.DefaultHistoryMaxAge
	}
	if maxEntries <= 0 {
		maxEntries = config.DefaultHistoryMaxEntries
	}
	return maxAge, maxEntries
}
