// Package local is the embedded durable queue behind standalone mode: one SQLite file (pure Go,
// no cgo) that keeps the Service Bus semantics the worker relies on — peek-lock with a lock
// duration, delivery counts, scheduled delivery, duplicate detection on MessageID, a dead-letter
// queue with reasons, and resubmit.
//
// Durability is the promise the intake makes before it answers 202, so the database runs in WAL
// mode and a Publish returns only after its transaction is fsynced. Receive locks and
// settlements are committed without an fsync of their own (see durability): a killed process
// keeps them, a power loss can undo the last of them, which redelivers those messages.
//
// One goroutine writes (the group-commit writer, writer.go); the worker's Receive is handed the
// publishes that land while it waits (handoff.go) and reads the file only for what it was not
// handed; checkpoints run on a connection of their own beside the writer (checkpoint.go).
//
// One process owns a data directory. Open takes an exclusive, non-blocking flock on a lock file
// in it, and releases the locks of messages an earlier (crashed or stopped) process was holding.
package local

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/dvrelay/dvrelay/internal/config"
	"github.com/dvrelay/dvrelay/internal/queue"
)

// Compile-time checks that the embedded queue serves every role the runtimes give it.
var (
	_ queue.Publisher    = (*Queue)(nil)
	_ queue.DeadLetterer = (*Queue)(nil)
	_ queue.Receiver     = (*Queue)(nil)
	_ queue.Settler      = (*Queue)(nil)
)

const (
	dbFileName   = "queue.db"
	lockFileName = "queue.lock"

	// schemaVersion is stored in PRAGMA user_version; a file written by a newer layout is refused
	// rather than misread.
	schemaVersion = 3
)

// ErrClosed reports a call on a queue after Close.
var ErrClosed = errors.New("queue is closed")

// Options tune the queue. Zero values take the defaults noted on each field, internal/config's,
// so a queue opened bare (in a test) behaves as one opened from the settings.
type Options struct {
	// LockDuration is how long a received message stays invisible to other receivers before
	// it is delivered again (config.DefaultLockDuration).
	LockDuration time.Duration
	// MaxDeliveryCount is the number of deliveries after which an abandoned or expired message
	// is dead-lettered with reason MaxDeliveryCountExceeded (config.DefaultMaxDeliveryCount).
	MaxDeliveryCount int
	// DuplicateWindow is how long a MessageID is remembered for duplicate detection
	// (config.DefaultDuplicateWindow).
	DuplicateWindow time.Duration
	// HistoryMaxAge and HistoryMaxEntries bound the events' history support reads (default 7
	// days and 200,000 entries); the oldest entries go first.
	HistoryMaxAge     time.Duration
	HistoryMaxEntries int
	// Now is the clock; tests replace it to move through lock and schedule times without sleeping.
	Now func() time.Time

	// maxBatch caps a group commit (defaultMaxBatch); 1 turns group commit off, for the
	// benchmark that prices it.
	maxBatch int
	// beforeRead runs before every read on the read pool; tests block in it to stand for a
	// stalled disk.
	beforeRead func()
	// committed is told the durability of every group commit; tests check which changes are
	// fsynced with it.
	committed func(durability)
	// checkpointed is told what each background checkpoint found logged and copied (pages).
	checkpointed func(logged, copied int)

	// Retained, when set, is told how many bytes the queue keeps alive for as long as it runs
	// (the duplicate window's index, idindex.go), each time that changes by a bucket: at Open
	// and then from the writer goroutine. A process that bounds its garbage with a soft memory
	// limit raises the limit by it, or the collector would run without pause once the index
	// alone filled the limit.
	Retained func(bytes int64)
}

func (o Options) withDefaults() Options {
	if o.LockDuration <= 0 {
		o.LockDuration = config.DefaultLockDuration
	}
	if o.MaxDeliveryCount <= 0 {
		o.MaxDeliveryCount = config.DefaultMaxDeliveryCount
	}
	if o.DuplicateWindow <= 0 {
		o.DuplicateWindow = config.DefaultDuplicateWindow
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.maxBatch <= 0 {
		o.maxBatch = defaultMaxBatch
	}
	return o
}

// Queue is the embedded durable queue. It is safe for concurrent use.
//
// Every write runs on a single database connection, db. SQLite admits one writer at a time, so
// one connection turns lock contention into Go-level queueing on the pool: no SQLITE_BUSY, no
// retry loops. Publishes, settlements, dead-letters and the locks a Receive takes go through one
// writer goroutine that lets concurrent callers share a commit (see write); the support tools
// run their own short transactions on the same connection. Reads that need no lock (what is
// available, what falls due next, Stats) run on a separate read pool, readers, which in WAL
// mode never waits for the writer (see read).
type Queue struct {
	dir       string
	opts      Options
	log       *slog.Logger
	db        *sql.DB
	readers   *sql.DB
	stmts     *statements
	dirLock   *os.File
	closing   chan struct{}
	closeErr  error
	closeOnce sync.Once

	// connLevel is the synchronous level last set on the writer connection (see inTx).
	connLevel durability

	// writes feeds the group-commit writer (see write).
	writes     chan *writeRequest
	writerDone chan struct{}

	// wakeMu guards wakeCh: a channel that is closed (and replaced) whenever a message may have
	// become available, so every waiting Receive re-checks at once.
	wakeMu sync.Mutex
	wakeCh chan struct{}

	// waiting are the Receives waiting for a publish to be handed to them (see handoff.go).
	waiting waiters
	// ws is the writer goroutine's own record of the batch it is committing.
	ws writerState
	// ckpt runs the checkpoints beside the writer (see checkpoint.go).
	ckpt *checkpointer

	history historyState
	// ids indexes the message ids of the duplicate window (see recentids.go); the writer's own.
	ids *recentIDs
}

// Open opens (creating if needed) the queue stored in dir and takes ownership of dir for this
// process. Locks held by an earlier process are released: those messages are available at once,
// with the interrupted delivery counted as an expired lock would be.
func Open(ctx context.Context, dir string, opts Options, log *slog.Logger) (*Queue, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open queue: create data dir %s: %w", dir, err)
	}
	dirLock, err := lockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open queue: %w", err)
	}
	q := &Queue{
		dir:        dir,
		opts:       opts.withDefaults(),
		log:        log,
		dirLock:    dirLock,
		closing:    make(chan struct{}),
		writes:     make(chan *writeRequest),
		writerDone: make(chan struct{}),
		wakeCh:     make(chan struct{}),
	}
	q.waiting.stale.Store(true)
	if err := q.openDB(ctx); err != nil {
		_ = unlockDir(dirLock)
		return nil, fmt.Errorf("open queue %s: %w", dir, err)
	}
	if err := q.loadRecentIDs(ctx); err != nil {
		_ = q.closeDB()
		_ = unlockDir(dirLock)
		return nil, fmt.Errorf("open queue %s: %w", dir, err)
	}
	released, err := q.releaseLocks(ctx)
	if err != nil {
		_ = q.closeDB()
		_ = unlockDir(dirLock)
		return nil, fmt.Errorf("open queue %s: release locks of an earlier process: %w", dir, err)
	}
	if released > 0 {
		q.log.Info("released message locks left by an earlier process", "dir", dir, "count", released)
	}
	if q.ckpt, err = openCheckpointer(filepath.Join(dir, dbFileName)); err != nil {
		_ = q.closeDB()
		_ = unlockDir(dirLock)
		return nil, fmt.Errorf("open queue %s: %w", dir, err)
	}
	go q.writer()
	go q.runCheckpoints(q.closing)
	return q, nil
}

func (q *Queue) openDB(ctx context.Context) error {
	path := filepath.Join(q.dir, dbFileName)
	// SQLite's own page cache (2 MB) and temporary files, on purpose. A 16 MiB cache and
	// sub-journals in memory bought nothing once group commits ran without savepoints, and with
	// 256 KB bodies they took the process from 91 to 145 MiB (BENCHMARKS.md): the bodies'
	// overflow pages fill any cache, and SQLite's memory is outside GOMEMLIMIT.
	db, err := openPool(path, 1,
		"busy_timeout(5000)", "journal_mode(WAL)", "synchronous(FULL)",
		// Checkpoints run beside the writer (checkpoint.go); its own is only the log's size bound.
		fmt.Sprintf("wal_autocheckpoint(%d)", walFallbackPages),
		"_txlock=immediate")
	if err != nil {
		return err
	}
	q.db = db
	if err := q.migrate(ctx); err != nil {
		_ = db.Close()
		return err
	}
	if q.readers, err = openReaders(path); err != nil {
		_ = db.Close()
		return err
	}
	if q.stmts, err = prepareStatements(ctx, db, q.readers); err != nil {
		_ = q.readers.Close()
		_ = db.Close()
		return err
	}
	return nil
}

const schema = `
CREATE TABLE IF NOT EXISTS messages (
	seq            INTEGER PRIMARY KEY AUTOINCREMENT,
	message_id     TEXT    NOT NULL,
	correlation_id TEXT    NOT NULL,
	subject        TEXT    NOT NULL,
	session_id     TEXT    NOT NULL,
	content_type   TEXT    NOT NULL,
	body           BLOB    NOT NULL,
	props          TEXT    NOT NULL, -- application properties, JSON object
	enqueued_at    INTEGER NOT NULL, -- unix ns
	due_at         INTEGER NOT NULL, -- unix ns: enqueue time, or the scheduled time
	delivery_count INTEGER NOT NULL DEFAULT 0,
	lock_token     TEXT,
	locked_until   INTEGER NOT NULL DEFAULT 0,
	group_key      TEXT,                       -- the order key (queue.OrderKey); NULL: none
	waiting        INTEGER NOT NULL DEFAULT 0  -- 1: an earlier message of group_key is still here
);
CREATE INDEX IF NOT EXISTS messages_due ON messages (due_at, seq);
-- messages_ready_heads holds the messages a Receive may hand out: unlocked, and first of their
-- order key. A Receive finds the next one at the index's front rather than stepping over (and
-- reading the row of) every message held locked or waiting behind an earlier one of its record.
CREATE INDEX IF NOT EXISTS messages_ready_heads ON messages (due_at, seq) WHERE lock_token IS NULL AND waiting = 0;
CREATE INDEX IF NOT EXISTS messages_locked ON messages (locked_until) WHERE lock_token IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_group ON messages (group_key, seq) WHERE group_key IS NOT NULL;
-- A message leaving the queue (completed, dead-lettered, however) hands its key to the next
-- message of the key: the one rule of order, kept here so no path that deletes can forget it.
-- A message that keeps its place (an abandon, a retry in place) is updated, never deleted.
CREATE TRIGGER IF NOT EXISTS messages_release_group AFTER DELETE ON messages
WHEN old.group_key IS NOT NULL AND old.waiting = 0
BEGIN
	` + releaseGroupSQL + `;
END;


CREATE TABLE IF NOT EXISTS dead_letters (
	seq              INTEGER PRIMARY KEY AUTOINCREMENT,
	message_id       TEXT    NOT NULL,
	correlation_id   TEXT    NOT NULL,
	subject          TEXT    NOT NULL,
	session_id       TEXT    NOT NULL,
	content_type     TEXT    NOT NULL,
	body             BLOB    NOT NULL,
	props            TEXT    NOT NULL,
	enqueued_at      INTEGER NOT NULL,
	delivery_count   INTEGER NOT NULL,
	reason           TEXT    NOT NULL,
	description      TEXT    NOT NULL,
	dead_lettered_at INTEGER NOT NULL,
	group_key        TEXT,
	queued_seq       INTEGER NOT NULL DEFAULT 0, -- its sequence number on the main queue; 0: never queued
	-- the latest later event of its record that completed since: resubmitting this one would
	-- apply older data over newer (see markNewerSQL)
	newer_message_id TEXT,
	newer_at         INTEGER
);
CREATE INDEX IF NOT EXISTS dead_letters_group ON dead_letters (group_key) WHERE group_key IS NOT NULL;

CREATE TABLE IF NOT EXISTS resubmits (
	base_message_id TEXT    PRIMARY KEY,
	count           INTEGER NOT NULL
) WITHOUT ROWID;
`

func (q *Queue) migrate(ctx context.Context) error {
	var version int
	if err := q.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if version > schemaVersion {
		return fmt.Errorf("schema version %d is newer than this binary understands (%d)", version, schemaVersion)
	}
	if version == 1 {
		if err := q.migrateToOrderKeys(ctx); err != nil {
			return fmt.Errorf("add order keys to schema version 1: %w", err)
		}
	}
	if _, err := q.db.ExecContext(ctx, schema+messageIDsSchema+historySchema); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	if version > 0 && version < 3 {
		if err := q.migrateDuplicates(ctx); err != nil {
			return fmt.Errorf("move the duplicate window's ids of schema version %d: %w", version, err)
		}
	}
	if _, err := q.db.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
		return fmt.Errorf("write schema version: %w", err)
	}
	return nil
}

// migrateDuplicates moves the ids of schema version 2's duplicates table, keyed on the id, into
// message_ids in the order they came (see recentids.go), then compacts the file. The dropped
// table's pages would otherwise sit on SQLite's free list, and allocating from a long free list
// rewrites its pages: with 70,000 free pages every event wrote 140 KB instead of 53.
func (q *Queue) migrateDuplicates(ctx context.Context) error {
	start := time.Now()
	err := q.inTx(ctx, survivesPowerLoss, func(tx *sql.Tx) error {
		for _, stmt := range []string{
			`INSERT INTO message_ids (message_id, first_seen) SELECT message_id, first_seen FROM duplicates ORDER BY first_seen`,
			`DROP TABLE duplicates`,
		} {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("%s: %w", stmt, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if _, err := q.db.ExecContext(ctx, `VACUUM`); err != nil {
		return fmt.Errorf("compact the file: %w", err)
	}
	q.log.Info("moved the duplicate window's ids to the layout of this version and compacted the file",
		"took", time.Since(start).Round(time.Millisecond).String())
	return nil
}

// releaseLocks ends every lock at once: after a restart no receiver holds any of them.
func (q *Queue) releaseLocks(ctx context.Context) (int64, error) {
	var released int64
	err := q.inTx(ctx, survivesPowerLoss, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE messages SET locked_until = 0 WHERE lock_token IS NOT NULL`)
		if err != nil {
			return err
		}
		if released, err = res.RowsAffected(); err != nil {
			return err
		}
		return q.expireLocks(ctx, tx, q.nowNS())
	})
	return released, err
}

// Close stops the group-commit writer, closes the database and releases the data directory.
// Writes still waiting fail with ErrClosed. Message locks are left as they are; the next
// Open releases them.
func (q *Queue) Close() error {
	q.closeOnce.Do(func() {
		close(q.closing)
		<-q.writerDone
		q.wake()
		q.closeErr = errors.Join(q.ckpt.close(), q.closeDB(), unlockDir(q.dirLock))
	})
	return q.closeErr
}

func (q *Queue) closeDB() error {
	return errors.Join(q.stmts.close(), q.readers.Close(), q.db.Close())
}

func (q *Queue) checkOpen() error {
	select {
	case <-q.closing:
		return ErrClosed
	default:
		return nil
	}
}

func (q *Queue) nowNS() int64 { return q.opts.Now().UnixNano() }

// wake tells every waiting Receive that a message may have become available, one they must look
// for on the queue.
func (q *Queue) wake() {
	q.waiting.stale.Store(true)
	q.wakeMu.Lock()
	close(q.wakeCh)
	q.wakeCh = make(chan struct{})
	q.wakeMu.Unlock()
}

// wakeup returns the channel the next wake closes. Take it before looking for messages so a
// publish that lands in between is not missed.
func (q *Queue) wakeup() <-chan struct{} {
	q.wakeMu.Lock()
	defer q.wakeMu.Unlock()
	return q.wakeCh
}

func fromNS(ns int64) time.Time { return time.Unix(0, ns).UTC() }
