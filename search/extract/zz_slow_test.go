package extract

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSlowCorpus(t *testing.T) {
	dir := os.Getenv("CORPUS")
	files, _ := os.ReadDir(dir)
	types := []string{"text/plain", "text/markdown", "text/html", "text/csv", "application/json", "application/pdf", docxType}
	for _, f := range files {
		b, _ := os.ReadFile(filepath.Join(dir, f.Name()))
		lines := strings.Split(string(b), "\n")
		// go test fuzz v1; uint8(x); []byte("..."); int(n)
		kq := strings.TrimSuffix(strings.TrimPrefix(lines[1], "byte("), ")")
		kr, err := strconv.Unquote(kq)
		if err != nil {
			t.Logf("%s: kind %v", f.Name(), err)
			continue
		}
		k := int(kr[0])
		q := strings.TrimSuffix(strings.TrimPrefix(lines[2], "[]byte("), ")")
		data, err := strconv.Unquote(q)
		if err != nil {
			t.Logf("%s: %v", f.Name(), err)
			continue
		}
		m, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(lines[3], "int("), ")"))
		m %= 1 << 16
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		start := time.Now()
		_, _, err = Text(ctx, bytes.NewReader([]byte(data)), types[k%len(types)], "", m)
		cancel()
		if d := time.Since(start); d > 200*time.Millisecond {
			t.Logf("%s: kind %d, %d bytes, %v, err %v", f.Name(), k%len(types), len(data), d, err)
		}
	}
}
