package local

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/queue"
)

// crashHelperEnv names the data dir when the test binary runs as the process that crashes.
const crashHelperEnv = "DVRELAY_LOCAL_QUEUE_CRASH_DIR"

// TestHelperProcess_holds_a_lock_until_killed is not a test. TestQueue_survives_a_killed_process
// runs it as a child process: it opens the queue, locks a message, says so, and waits to be killed.
func TestHelperProcess_holds_a_lock_until_killed(t *testing.T) {
	dir := os.Getenv(crashHelperEnv)
	if dir == "" {
		t.Skip("helper process for TestQueue_survives_a_killed_process")
	}
	q, err := Open(context.Background(), dir, Options{LockDuration: time.Hour}, nil)
	if err != nil {
		fmt.Println("open failed:", err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := q.Receive(ctx, 1); err != nil {
		fmt.Println("receive failed:", err)
		os.Exit(1)
	}
	fmt.Println("locked")
	select {} // hold the directory and the lock until SIGKILL
}

func TestQueue_survives_a_killed_process(t *testing.T) {
	dir := t.TempDir()
	q := openTestQueue(t, dir, Options{})
	mustPublish(t, q, msg("held-by-the-dead"))
	if err := q.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	child := exec.Command(os.Args[0], "-test.run=^TestHelperProcess_holds_a_lock_until_killed$")
	child.Env = append(os.Environ(), crashHelperEnv+"="+dir)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatalf("start helper: %v", err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "locked" {
		t.Fatalf("helper said %q, %v; want locked", line, err)
	}

	_, err = Open(context.Background(), dir, Options{}, nil)
	if !errors.Is(err, queue.ErrDirInUse) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", child.Process.Pid)) {
		t.Fatalf("Open while the helper runs = %v, want ErrDirInUse naming pid %d", err, child.Process.Pid)
	}

	if err := child.Process.Kill(); err != nil { // SIGKILL: no Close, no cleanup
		t.Fatalf("kill helper: %v", err)
	}
	_ = child.Wait()

	q = openTestQueue(t, dir, Options{LockDuration: time.Hour})
	back := mustReceive(t, q, 1) // at once, although the dead process's lock had an hour left
	if back[0].MessageID != "held-by-the-dead" || back[0].DeliveryCount != 2 {
		t.Fatalf("got %s #%d, want held-by-the-dead with the crashed delivery counted (#2)", back[0].MessageID, back[0].DeliveryCount)
	}
}
