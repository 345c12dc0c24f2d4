package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times: 100 on every Linux port
// this runs on (the kernel fixes it for user space whatever its internal HZ).
const clockTicks = 100

// cpuSeconds reads the user and system CPU time a process has used.
func cpuSeconds(pid int) (float64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, field 2, may hold spaces; the fields after its ')' are fixed.
	s := string(raw)
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	fields := strings.Fields(s[end+1:])
	// fields[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(fields) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseFloat(fields[11], 64)
	stime, err2 := strconv.ParseFloat(fields[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	return (utime + stime) / clockTicks, nil
}

// writeBytes reads what a process has caused to be written to storage (write_bytes of
// /proc/<pid>/io): its files' pages as they are dirtied, whatever the page cache does after.
func writeBytes(pid int) (float64, error) {
	return procNumber(fmt.Sprintf("/proc/%d/io", pid), "write_bytes:", "")
}

// rssMiB reads a process's resident set size.
func rssMiB(pid int) (float64, error) {
	kb, err := procNumber(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:", "kB")
	return kb / 1024, err
}

// procNumber reads the number on the line of a /proc file that starts with name, unit after it.
func procNumber(path, name, unit string) (float64, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, name); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), unit)), 64)
			if err != nil {
				return 0, fmt.Errorf("%s %s %q: %w", path, name, rest, err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("no %s in %s", name, path)
}
