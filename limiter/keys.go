package limiter

import "strings"

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
