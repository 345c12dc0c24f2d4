package local

import (
	"context"
	"database/sql"
	"strings"
	"testing"
)

// The statements every Receive and every health check runs must cost the same with a backlog of
// a hundred thousand messages as with ten: each finds its rows through an index. A plan step
// "SCAN messages" walks the whole table (or, with messages_due, a whole index of it); the only
// scan allowed is of messages_locked, the partial index that holds the locked messages alone.
func TestHot_statements_are_answered_from_an_index(t *testing.T) {
	q := openTestQueue(t, t.TempDir(), Options{})
	hot := map[string]string{
		"receive: lock due messages":            lockDueSQL,
		"receive: next due or expiring":         nextAvailableSQL,
		"lock expiry: copy exhausted to DLQ":    deadLetterCopySQL(lockExhausted, true),
		"lock expiry: delete exhausted":         deleteExhaustedSQL,
		"lock expiry: release the others":       releaseExpiredSQL,
		"stats":                                 statsSQL,
		"settlement: dead-letter with a reason": deadLetterCopySQL(`seq = @seq`, false),
		"publish: join the record's order":      publishArgs().Replace(insertMessageSQL()),
		"publish: locked for a waiting receive": publishArgs().Replace(insertLockedSQL()),
		"settlement: hand the key on":           strings.ReplaceAll(releaseGroupSQL, "old.group_key", "@key"),
		"settlement: complete":                  strings.ReplaceAll(completeSQL, "?1", "@seq"),
		"settlement: mark older dead letters":   strings.NewReplacer("?1", "@seq", "?2", "@now").Replace(markNewerSQL),
	}
	args := []any{
		sql.Named("now", 1), sql.Named("max", 10), sql.Named("until", 2), sql.Named("limit", 16),
		sql.Named("seq", 1), sql.Named("reason", "r"), sql.Named("description", "d"), sql.Named("props", "{}"),
		sql.Named("key", "account/1"),
	}
	for name, stmt := range hot {
		t.Run(name, func(t *testing.T) {
			plan := queryPlan(t, q.db, stmt, args)
			t.Logf("plan:\n%s", strings.Join(plan, "\n"))
			for _, step := range plan {
				// Every Complete runs this one: it must not walk the dead letters (stats may count them).
				if strings.HasPrefix(step, "SCAN dead_letters") && strings.HasPrefix(stmt, "UPDATE dead_letters") {
					t.Errorf("plan step %q walks the dead-letter queue on every completion; plan:\n%s", step, strings.Join(plan, "\n"))
				}
				if strings.HasPrefix(step, "SCAN messages") && !strings.HasSuffix(step, "INDEX messages_locked") {
					t.Errorf("plan step %q walks the whole queue; plan:\n%s\nstatement:\n%s",
						step, strings.Join(plan, "\n"), stmt)
				}
			}
		})
	}
}

// publishArgs puts values in place of a publish's positional parameters, for EXPLAIN.
func publishArgs() *strings.Replacer {
	return strings.NewReplacer("?11", "'token'", "?12", "@until", "?10", "@key", "?1", "'e1'", "?2", "'c'",
		"?3", "'s'", "?4", "''", "?5", "'j'", "?6", "x'00'", "?7", "'{}'", "?8", "@now", "?9", "@now")
}

// queryPlan returns the detail column of EXPLAIN QUERY PLAN, one step a line, as SQLite prints it.
func queryPlan(t *testing.T, db *sql.DB, stmt string, args []any) []string {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+stmt, usedArgs(stmt, args)...)
	if err != nil {
		t.Fatalf("explain: %v\n%s", err, stmt)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var (
			id, parent, unused int
			detail             string
		)
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return plan
}

// usedArgs keeps the named arguments stmt refers to: the driver refuses names a statement lacks.
func usedArgs(stmt string, args []any) []any {
	var used []any
	for _, a := range args {
		if strings.Contains(stmt, "@"+a.(sql.NamedArg).Name) {
			used = append(used, a)
		}
	}
	return used
}
