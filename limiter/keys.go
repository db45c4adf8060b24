package limiter

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode/utf8"
)

// key builds "<prefix>{<kind>:<id>}<suffix>". Every key of one user,
// endpoint, API or pool shares the braces' hash tag, so a script's keys sit
// in one Cluster slot.
//
// An id holding '{' or '}' would cut the tag short ("a}x" and "a}y" would
// both be tagged "u:a"), so ids crafted that way could all be aimed at one
// Cluster slot. Such an id is tagged by a hash of the whole id instead and
// written out after the tag: "<prefix>{<kind>:#<16 hex digits>}/<id><suffix>".
// Other ids keep their keys. Keys stay distinct: after the first '}' an
// ordinary key has only its suffix, which starts with ':', a hashed one
// has '/'.
func (l *Limiter) key(kind, id, suffix string) string {
	var b strings.Builder
	if strings.ContainsAny(id, "{}") {
		sum := sha256.Sum256([]byte(id))
		b.Grow(len(l.prefix) + len(kind) + 2*hashTagBytes + len(id) + len(suffix) + 5)
		b.WriteString(l.prefix)
		b.WriteByte('{')
		b.WriteString(kind)
		b.WriteString(":#")
		b.WriteString(hex.EncodeToString(sum[:hashTagBytes]))
		b.WriteString("}/")
		b.WriteString(id)
		b.WriteString(suffix)
		return b.String()
	}
	b.Grow(len(l.prefix) + len(kind) + len(id) + len(suffix) + 3)
	b.WriteString(l.prefix)
	b.WriteByte('{')
	b.WriteString(kind)
	b.WriteByte(':')
	b.WriteString(id)
	b.WriteByte('}')
	b.WriteString(suffix)
	return b.String()
}

// hashTagBytes of SHA-256 tag an id holding braces: 64 bits, so distinct
// ids almost never share a tag (nothing breaks if they do).
const hashTagBytes = 8

// UserKeys returns every Redis key that can hold user's state under the
// per-user policy, whichever layout the Config selects: the window's
// sorted set and the cooldown-only string. It is for operators' tools and
// load generators, so nothing outside this package rebuilds key names.
// It sends nothing to Redis; a bad id is ErrInvalidUser.
func (l *Limiter) UserKeys(user string) ([]string, error) {
	if err := l.usable(); err != nil {
		return nil, err
	}
	if err := validUser(user); err != nil {
		return nil, err
	}
	return []string{l.key("u", user, ":w"), l.key("u", user, ":cd")}, nil
}

// validUser checks a user id before it becomes part of a key.
func validUser(user string) error {
	if user == "" {
		return fmt.Errorf("%w: empty", ErrInvalidUser)
	}
	if len(user) > MaxUserLen {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrInvalidUser, len(user), MaxUserLen)
	}
	return nil
}

// validPolicy is what every policy constructor (method) checks first: a
// Limiter to build on and a valid name of its kind.
func (l *Limiter) validPolicy(method, kind, name string) error {
	if l == nil {
		return fmt.Errorf("%w: %s called on a nil Limiter", ErrInvalidArgument, method)
	}
	return validName(kind, name)
}

// validName checks an endpoint, API or slot-pool name. Names come from
// configuration, not from chat users, so they must also be valid UTF-8.
func validName(kind, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty %s name", ErrInvalidName, kind)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: %s name of %d bytes, at most %d", ErrInvalidName, kind, len(name), MaxNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: %s name %q is not UTF-8", ErrInvalidName, kind, name)
	}
	return nil
}
