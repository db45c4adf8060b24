// Package redisurltest holds the hostile Redis URLs that every place
// showing a URL (the limiter's errors and RedactURL, each command's
// output) is tested with.
package redisurltest

// Hostile is a URL holding secrets, none of which may be shown.
type Hostile struct {
	URL     string
	Secrets []string // each at least 4 bytes, and not a word of any message
}

// HostileURLs cover passwords in userinfo (plain, percent-encoded, with
// the characters that break url.Parse or a URL's structure) and in the
// query, in every URL form.
var HostileURLs = []Hostile{
	{"redis://:Hunter2pw@127.0.0.1:1", []string{"Hunter2pw"}},
	{"redis://bot:Hunter2pw@127.0.0.1:1/0", []string{"Hunter2pw"}},
	{"rediss://bot:Hunter2pw@127.0.0.1:1?skip_verify=true", []string{"Hunter2pw"}},
	{"redis://bot:Hun%40ter2pw@127.0.0.1:1", []string{"Hun%40ter2pw", "Hun@ter2pw", "ter2pw"}},
	// url.Parse rejects these; ParseRedisURL accepts the first two.
	{"redis://bot:Hunt er2pw@127.0.0.1:1", []string{"Hunt er2pw", "er2pw", "Hunt"}},
	{"redis://bot:Hunt{er2pw}@127.0.0.1:1", []string{"Hunt{er2pw}", "er2pw", "Hunt"}},
	{"redis://bot:Hunt%zzer2pw@127.0.0.1:1", []string{"Hunt%zzer2pw", "zzer2pw", "Hunt"}},
	// Unencoded structure characters in the password.
	{"redis://bot:Hunt/er2pw@127.0.0.1:1", []string{"Hunt/er2pw", "er2pw", "Hunt"}},
	{"redis://bot:Hunt?er2pw@127.0.0.1:1", []string{"Hunt?er2pw", "er2pw", "Hunt"}},
	{"redis://bot:Hunt#er2pw@127.0.0.1:1", []string{"Hunt#er2pw", "er2pw", "Hunt"}},
	{"redis://bot:Hunt@er2pw@127.0.0.1:1", []string{"Hunt@er2pw", "er2pw", "Hunt"}},
	{"redis://bot:Hunt,er2pw@127.0.0.1:1,127.0.0.1:2", []string{"Hunt,er2pw", "er2pw", "Hunt"}},
	{"redis://bot:Hunt://er2pw@127.0.0.1:1", []string{"er2pw", "Hunt"}},
	{"Hunter2pw@127.0.0.1:1", []string{"Hunter2pw"}},
	// Query secrets.
	{"redis://127.0.0.1:1?password=Hunter2pw", []string{"Hunter2pw"}},
	{"redis://127.0.0.1:1?db=0&password=Hunt@er2pw", []string{"Hunt@er2pw", "er2pw", "Hunt"}},
	{"redis://127.0.0.1:1?pass%77ord=Hunter2pw", []string{"Hunter2pw"}},
	{"redis-sentinel://127.0.0.1:1/mymaster?sentinel_password=Hunter2pw", []string{"Hunter2pw"}},
	{"redis+sentinel://:Hunter2pw@127.0.0.1:1,127.0.0.1:2/mymaster?sentinel_password=Sentinel9&db=1", []string{"Hunter2pw", "Sentinel9"}},
	{"redis-sentinel://127.0.0.1:1/mymaster?sentinel_password=Hunt,er2pw", []string{"Hunt,er2pw", "er2pw", "Hunt"}},
	// Lists and Cluster forms.
	{"redis://bot:Hunter2pw@127.0.0.1:1,redis://bot:Hunter2pw@127.0.0.1:2", []string{"Hunter2pw"}},
	{"127.0.0.1:1,redis://bot:Hunter2pw@127.0.0.1:2", []string{"Hunter2pw"}},
	{"redis-cluster://bot:Hunter2pw@127.0.0.1:1,127.0.0.1:2", []string{"Hunter2pw"}},
	{"unix://bot:Hunter2pw@/run/redis.sock", []string{"Hunter2pw"}},
}
