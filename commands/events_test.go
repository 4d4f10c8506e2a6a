package commands_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/commands"
	"github.com/atlas-workspace/atlas/eventstore"
)

// plainCipher opens "enc:v1:" fields as the text "opened", so samples need no real key.
type plainCipher struct{}

func (plainCipher) Seal(_ uuid.UUID, s string) (string, error) { return "enc:v1:" + s, nil }
func (plainCipher) Open(_ uuid.UUID, s string) (string, error) {
	if !strings.HasPrefix(s, "enc:v1:") {
		return "", os.ErrInvalid
	}
	return "opened", nil
}

// sameCipher opens nothing: fields read as stored.
type sameCipher struct{}

func (sameCipher) Seal(_ uuid.UUID, s string) (string, error) { return s, nil }
func (sameCipher) Open(_ uuid.UUID, s string) (string, error) { return s, nil }

// Every registered event keeps a golden JSON sample in testdata/events that must still decode, and
// every sample names a registered event or an older version of one that still decodes through its
// upcasters: stored events are never orphaned by a code change.
func TestEveryEventHasAGoldenSampleThatDecodes(t *testing.T) {
	reg := eventstore.NewRegistry()
	commands.RegisterEvents(reg)
	names := map[string]bool{}
	for _, name := range reg.Names() {
		names[name] = true
		data, err := os.ReadFile(filepath.Join("testdata", "events", name+".json"))
		if err != nil {
			t.Errorf("%s: no golden sample: %v", name, err)
			continue
		}
		typ, ver, err := eventstore.SplitName(name)
		if err != nil {
			t.Fatal(err)
		}
		e, err := reg.Decode(typ, ver, data, plainCipher{})
		if err != nil {
			t.Errorf("%s: golden sample does not decode: %v", name, err)
			continue
		}
		if e.EventName() != name {
			t.Errorf("%s decodes as %s", name, e.EventName())
		}
		// The registry decodes with a faster JSON decoder than encoding/json; it must agree with it.
		plain, err := reg.Decode(typ, ver, data, sameCipher{})
		if err != nil {
			t.Fatal(err)
		}
		std := reflect.New(reflect.TypeOf(plain))
		if err := json.Unmarshal(data, std.Interface()); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(plain, std.Elem().Interface()) {
			t.Errorf("%s: the registry decodes\n%#v\nencoding/json decodes\n%#v", name, plain, std.Elem().Interface())
		}
		// Every field of the sample is understood: re-encoding keeps the same keys.
		_, _, again, err := reg.Encode(e, plainCipher{})
		if err != nil {
			t.Fatal(err)
		}
		var a, b map[string]any
		_ = json.Unmarshal(data, &a)
		_ = json.Unmarshal(again, &b)
		if !reflect.DeepEqual(keys(a), keys(b)) {
			t.Errorf("%s: sample keys %v, encoded keys %v", name, keys(a), keys(b))
		}
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "events", "*.json"))
	for _, f := range files {
		n := strings.TrimSuffix(filepath.Base(f), ".json")
		if names[n] {
			continue
		}
		if !reg.HasUpcaster(n) {
			t.Errorf("sample %s names no registered event, and no upcaster lifts it", f)
			continue
		}
		typ, ver, err := eventstore.SplitName(n)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(f)
		e, err := reg.Decode(typ, ver, data, plainCipher{})
		if err != nil {
			t.Errorf("%s: older sample does not upcast and decode: %v", n, err)
			continue
		}
		if e.EventName() != reg.CurrentName(typ) {
			t.Errorf("%s upcasts to %s, want %s", n, e.EventName(), reg.CurrentName(typ))
		}
	}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
