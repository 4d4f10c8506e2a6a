package eventstore

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/google/uuid"
	fastjson "github.com/segmentio/encoding/json"

	"github.com/atlas-workspace/atlas/domain"
)

// Upcaster lifts the JSON payload of one schema version of an event to the next version.
type Upcaster func(data json.RawMessage) (json.RawMessage, error)

// Registry maps explicit event names to payload types and upcasters. It is an instance built at wiring
// time; there is no global registry. Names have the form "<type>.v<version>", e.g. "space.created.v1".
type Registry struct {
	types     map[string]codec    // full name -> codec, for the current version of each type
	current   map[string]int      // type -> current schema version
	names     map[string]string   // type -> current full name
	upcasters map[string]Upcaster // full name of the older version -> lifts it by one version
}

type codec struct {
	decode func(data []byte, keys Cipher) (domain.Event, error)
	encode func(e domain.Event, keys Cipher) ([]byte, error)
}

// Cipher seals and opens personal data fields for one subject (a person).
type Cipher interface {
	Seal(subject uuid.UUID, plaintext string) (string, error)
	Open(subject uuid.UUID, sealed string) (string, error)
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{types: map[string]codec{}, current: map[string]int{}, names: map[string]string{}, upcasters: map[string]Upcaster{}}
}

// SplitName splits "space.created.v1" into ("space.created", 1).
func SplitName(name string) (typ string, version int, err error) {
	i := strings.LastIndex(name, ".v")
	if i <= 0 {
		return "", 0, fmt.Errorf("event name %q has no .v<version> suffix", name)
	}
	v, err := strconv.Atoi(name[i+2:])
	if err != nil || v < 1 {
		return "", 0, fmt.Errorf("event name %q has a bad version", name)
	}
	return name[:i], v, nil
}

// Register adds T as the payload of its event name (T's EventName()). Registering a name twice, or a
// version that is not newer than the type's registered one, panics: it is a wiring bug.
func Register[T domain.Event](r *Registry) {
	var zero T
	name := zero.EventName()
	typ, version, err := SplitName(name)
	if err != nil {
		panic(err)
	}
	if _, dup := r.types[name]; dup {
		panic("eventstore: event " + name + " registered twice")
	}
	if cur, ok := r.current[typ]; ok && cur >= version {
		panic(fmt.Sprintf("eventstore: %s registered after version %d", name, cur))
	}
	r.current[typ] = version
	r.names[typ] = name
	r.types[name] = codec{
		decode: func(data []byte, keys Cipher) (domain.Event, error) {
			var v T
			if err := fastjson.Unmarshal(data, &v); err != nil {
				return nil, fmt.Errorf("decode %s: %w", name, err)
			}
			if pd, ok := any(&v).(domain.PersonalData); ok {
				subject, fields := pd.PersonalData()
				if subject == uuid.Nil {
					fields = nil // no subject: the fields were stored as they are
				}
				for _, f := range fields {
					plain, err := keys.Open(subject, *f)
					if err != nil {
						return nil, fmt.Errorf("decode %s: personal data: %w", name, err)
					}
					*f = plain
				}
			}
			return v, nil
		},
		encode: func(e domain.Event, keys Cipher) ([]byte, error) {
			v, ok := e.(T)
			if !ok {
				return nil, fmt.Errorf("encode %s: payload is %T", name, e)
			}
			if pd, ok := any(&v).(domain.PersonalData); ok {
				subject, fields := pd.PersonalData()
				if subject == uuid.Nil {
					fields = nil // no subject: nothing in this event is personal data
				}
				for _, f := range fields {
					sealed, err := keys.Seal(subject, *f)
					if err != nil {
						return nil, fmt.Errorf("encode %s: personal data: %w", name, err)
					}
					*f = sealed
				}
			}
			return json.Marshal(v)
		},
	}
}

// RegisterUpcaster adds the function that lifts event name (an older version, e.g. "space.created.v1")
// to the next version of the same type.
func (r *Registry) RegisterUpcaster(name string, up Upcaster) {
	if _, _, err := SplitName(name); err != nil {
		panic(err)
	}
	if _, dup := r.upcasters[name]; dup {
		panic("eventstore: upcaster for " + name + " registered twice")
	}
	r.upcasters[name] = up
}

// HasUpcaster reports whether an older event name (e.g. "space.created.v1") has an upcaster.
func (r *Registry) HasUpcaster(name string) bool {
	_, ok := r.upcasters[name]
	return ok
}

// Names returns every registered current event name, sorted.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.types))
	for n := range r.types {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Encode returns the stored type, schema version and JSON of e, with personal data sealed.
func (r *Registry) Encode(e domain.Event, keys Cipher) (typ string, version int, data []byte, err error) {
	name := e.EventName()
	c, ok := r.types[name]
	if !ok {
		return "", 0, nil, fmt.Errorf("encode: event %s is not registered", name)
	}
	typ, version, _ = SplitName(name)
	data, err = c.encode(e, keys)
	return typ, version, data, err
}

// Decode turns a stored event into its current payload type, applying upcasters from the stored
// version up to the current one and opening personal data.
func (r *Registry) Decode(typ string, version int, data []byte, keys Cipher) (domain.Event, error) {
	cur, ok := r.current[typ]
	if !ok {
		return nil, fmt.Errorf("decode: event type %s is not registered", typ)
	}
	if version > cur {
		return nil, fmt.Errorf("decode: %s.v%d is newer than this build knows (v%d)", typ, version, cur)
	}
	for v := version; v < cur; v++ {
		name := fmt.Sprintf("%s.v%d", typ, v)
		up, ok := r.upcasters[name]
		if !ok {
			return nil, fmt.Errorf("decode: no upcaster from %s", name)
		}
		var err error
		if data, err = up(data); err != nil {
			return nil, fmt.Errorf("upcast %s: %w", name, err)
		}
	}
	return r.types[r.names[typ]].decode(data, keys)
}

// CurrentName returns the current full name of a stored event type ("space.created" → "space.created.v1"),
// or "" when the type is unknown.
func (r *Registry) CurrentName(typ string) string {
	return r.names[typ]
}

// NameOf returns the stored type of a delivered message, for handler lookup before decoding.
func NameOf(md map[string]string) (typ string) { return md[metaEventType] }
