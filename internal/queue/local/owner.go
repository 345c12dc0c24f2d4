package local

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// ownerFileName holds where the process that owns a data directory answers: `handler serve`
// records its listen address there, so support tools that find the directory locked know whom
// to ask.
const ownerFileName = "serve.json"

// Owner is what a running process recorded about itself in a data directory.
type Owner struct {
	Addr string `json:"addr"` // host:port it listens on
	PID  int    `json:"pid"`
}

// HasQueue reports whether dir holds an embedded queue, without creating anything: support
// tools must not leave an empty queue behind in a directory they were pointed at by mistake.
func HasQueue(dir string) (bool, error) {
	_, err := os.Stat(filepath.Join(dir, dbFileName))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("look for a queue in %s: %w", dir, err)
}

// RecordOwner writes addr and this process's pid into dir, for support tools to find, and
// returns the function that removes the record again at a clean shutdown. The removal leaves a
// record alone that another process has written since.
func RecordOwner(dir, addr string) (remove func() error, err error) {
	path := filepath.Join(dir, ownerFileName)
	me := Owner{Addr: addr, PID: os.Getpid()}
	b, err := json.Marshal(me)
	if err != nil {
		return nil, fmt.Errorf("record the owner of %s: %w", dir, err)
	}
	// Written to a temporary file and renamed, so a reader never sees half a record.
	tmp := path + ".tmp" + strconv.Itoa(me.PID)
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("record the owner of %s: %w", dir, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("record the owner of %s: %w", dir, err)
	}
	return func() error {
		if cur, err := readOwner(path); err != nil || cur != me {
			return nil
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove the owner record of %s: %w", dir, err)
		}
		return nil
	}, nil
}

// RecordedOwner reads the record of the process that owns dir. ok is false when there is none,
// or when the process that wrote it is gone (it was killed before it could remove it).
func RecordedOwner(dir string) (o Owner, ok bool, err error) {
	o, err = readOwner(filepath.Join(dir, ownerFileName))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Owner{}, false, nil
	case err != nil:
		return Owner{}, false, err
	case o.Addr == "" || !processAlive(o.PID):
		return Owner{}, false, nil
	}
	return o, true, nil
}

func readOwner(path string) (Owner, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Owner{}, err
	}
	var o Owner
	if err := json.Unmarshal(b, &o); err != nil {
		return Owner{}, fmt.Errorf("read %s: %w", path, err)
	}
	return o, nil
}
