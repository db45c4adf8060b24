package limiter

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// key builds "<prefix>{<kind>:<id>}<suffix>". Every key of one user,
// endpoint, API or pool shares the braces' hash tag, so a script's keys sit
// in one Cluster slot. Prefix and suffix are fixed, so distinct ids give
// distinct keys even when an id holds '{', '}' or ':'.
func (l *Limiter) key(kind, id, suffix string) string {
	var b strings.Builder
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
