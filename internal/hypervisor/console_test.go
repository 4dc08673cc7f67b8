package hypervisor

import (
	"regexp"
	"strings"
	"testing"
)

func newWatch(pattern string) *consoleWatch {
	return &consoleWatch{re: regexp.MustCompile(pattern), matched: make(chan string, 1), panicked: make(chan string, 1), ended: make(chan struct{})}
}

// A kernel panic before the pattern is reported once, so that the check fails at once
// instead of waiting out its timeout; after a match it is not.
func TestConsoleWatchKernelPanic(t *testing.T) {
	w := newWatch(`login: $`)
	w.Write([]byte("[    5.1] VFS: Cannot open root device\r\n[    5.2] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\r\n"))
	w.Write([]byte("[    5.3] Kernel panic - not syncing: again\r\n"))
	select {
	case line := <-w.panicked:
		if !strings.Contains(line, "Unable to mount root fs") {
			t.Fatalf("panic line %q", line)
		}
	default:
		t.Fatalf("no panic seen; tail %q", w.tail())
	}
	select {
	case line := <-w.panicked:
		t.Fatalf("a second panic reported: %q", line)
	case line := <-w.matched:
		t.Fatalf("matched %q", line)
	default:
	}

	w = newWatch(`login: $`)
	w.Write([]byte("host login: \nKernel panic - not syncing: later\n"))
	select {
	case line := <-w.panicked:
		t.Fatalf("a panic after the match reported: %q", line)
	default:
	}
}

func TestConsoleWatchLines(t *testing.T) {
	w := newWatch(`login: $`)
	for _, chunk := range []string{"\x1bc\x1b[?7l\x1b[2JSeaBIOS (version 1.16)\r\n", "Booting from Hard Disk...\r", "\n[    0.1] Linux ver", "sion 6.1\r\n\r\nhost login: "} {
		w.Write([]byte(chunk))
	}
	select {
	case line := <-w.matched:
		if line != "host login:" {
			t.Fatalf("matched %q", line)
		}
	default:
		t.Fatalf("no match; tail %q", w.tail())
	}
	tail := strings.Join(w.tail(), "|")
	if tail != "SeaBIOS (version 1.16)|Booting from Hard Disk...|[    0.1] Linux version 6.1|host login:" {
		t.Fatalf("tail %q", tail)
	}
	// At most consoleTail lines are kept.
	for i := 0; i < 100; i++ {
		w.Write([]byte("line\n"))
	}
	if n := len(w.tail()); n != consoleTail {
		t.Fatalf("%d lines kept", n)
	}
}

// FuzzConsoleWatch: whatever a guest prints, the watcher neither panics nor keeps more than
// its tail, and a match is reported once at most.
func FuzzConsoleWatch(f *testing.F) {
	f.Add([]byte("\x1b[2Jready\r\n"), []byte("login: "))
	f.Add([]byte{0xff, 0xfe, '\n', 0}, []byte("\x1b]0;title\x07"))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		w := newWatch(`ready|login: `)
		w.Write(a)
		w.Write(b)
		w.Write(a)
		if len(w.tail()) > consoleTail+1 {
			t.Fatalf("%d lines kept", len(w.tail()))
		}
		if len(w.partial) > 4096 {
			t.Fatalf("%d bytes pending", len(w.partial))
		}
	})
}
