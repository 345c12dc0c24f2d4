package local

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestRecordOwner_is_read_back_and_removed_at_a_clean_shutdown(t *testing.T) {
	dir := t.TempDir()
	remove, err := RecordOwner(dir, "127.0.0.1:8089")
	if err != nil {
		t.Fatal(err)
	}
	o, ok, err := RecordedOwner(dir)
	if err != nil || !ok || o.Addr != "127.0.0.1:8089" || o.PID != os.Getpid() {
		t.Fatalf("RecordedOwner = %+v, %v, %v; want this process at 127.0.0.1:8089", o, ok, err)
	}
	if err := remove(); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := RecordedOwner(dir); ok || err != nil {
		t.Errorf("after removal RecordedOwner = %v, %v; want no owner", ok, err)
	}
}

func TestRecordedOwner_ignores_a_record_left_by_a_dead_process(t *testing.T) {
	dir := t.TempDir()
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Skipf("no process to outlive: %v", err)
	}
	b, _ := json.Marshal(Owner{Addr: "127.0.0.1:8089", PID: gone.Process.Pid})
	if err := os.WriteFile(filepath.Join(dir, ownerFileName), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if o, ok, err := RecordedOwner(dir); ok || err != nil {
		t.Errorf("RecordedOwner = %+v, %v, %v; want the stale record ignored", o, ok, err)
	}
}

func TestRecordOwner_removal_leaves_a_newer_owners_record(t *testing.T) {
	dir := t.TempDir()
	remove, err := RecordOwner(dir, "127.0.0.1:1111")
	if err != nil {
		t.Fatal(err)
	}
	newer, _ := json.Marshal(Owner{Addr: "127.0.0.1:2222", PID: os.Getppid()})
	if err := os.WriteFile(filepath.Join(dir, ownerFileName), newer, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := remove(); err != nil {
		t.Fatal(err)
	}
	if o, ok, _ := RecordedOwner(dir); !ok || o.Addr != "127.0.0.1:2222" {
		t.Errorf("RecordedOwner = %+v, %v; want the newer record kept", o, ok)
	}
}

func TestHasQueue_tells_a_queue_from_an_empty_or_missing_directory_and_creates_nothing(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nothing-here")
	if ok, err := HasQueue(missing); ok || err != nil {
		t.Errorf("HasQueue(missing) = %v, %v", ok, err)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("HasQueue created %s", missing)
	}
	withQueue := t.TempDir()
	openTestQueue(t, withQueue, Options{})
	if ok, err := HasQueue(withQueue); !ok || err != nil {
		t.Errorf("HasQueue(a queue's dir) = %v, %v", ok, err)
	}
}
