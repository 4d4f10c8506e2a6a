package weaviatetest

import (
	"strconv"
	"strings"
	"testing"
)

// TestCappedKeepsHeadAndTail: a long output keeps its first and last bytes and says how much is
// left out in between.
func TestCappedKeepsHeadAndTail(t *testing.T) {
	t.Parallel()
	c := newCapped()
	c.Write([]byte("start\n"))
	if got := c.String(); got != "start\n" {
		t.Fatalf("short output: %q", got)
	}
	line := strings.Repeat("x", 99) + "\n"
	for range 3000 { // 300 KB
		c.Write([]byte(line))
	}
	c.Write([]byte("end\n"))
	c.Write([]byte(strings.Repeat("y", tailMax+10))) // one write larger than the tail
	c.Write([]byte("last\n"))
	got := c.String()
	total := 6 + 3000*len(line) + 4 + tailMax + 10 + 5
	want := "[... " + strconv.Itoa(total-headMax-tailMax) + " bytes left out ...]"
	if !strings.HasPrefix(got, "start\n") || !strings.HasSuffix(got, "ylast\n") || !strings.Contains(got, want) {
		t.Fatalf("long output: starts %q, ends %q; want it to contain %q", got[:20], got[len(got)-20:], want)
	}
	if n := len(got) - len("\n"+want+"\n"); n != headMax+tailMax {
		t.Fatalf("long output keeps %d bytes, want %d", n, headMax+tailMax)
	}
}
