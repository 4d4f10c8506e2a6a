package domain

import "github.com/google/uuid"

// Event is the payload of a domain event: a fact in the past tense with an explicit, stable, versioned
// name such as "space.created.v1". Names never derive from Go type names.
type Event interface {
	EventName() string
}

// PersonalData is implemented (on the pointer) by event payloads that carry a person's data. The event
// store encrypts the returned fields with the subject's key before writing and decrypts them on read;
// after erasure they read as ErasedValue. The pointers must point into the payload itself. A payload
// that returns uuid.Nil as its subject holds no personal data in this instance (a note in an
// organization's space, say): its fields are stored and read as they are.
type PersonalData interface {
	PersonalData() (subject uuid.UUID, fields []*string)
}

// ErasedValue replaces personal data whose subject has been erased.
const ErasedValue = "[erased]"
