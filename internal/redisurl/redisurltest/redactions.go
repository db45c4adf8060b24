package redisurltest

// Redactions is what redisurl.Redact (and limiter.RedactURL, which wraps
// it) makes of each URL: every password, in userinfo or the query, becomes
// redisurl.Redacted, and the rest stays as written.
var Redactions = map[string]string{
	"":                                  "",
	"redis://h:1":                       "redis://h:1",
	"h1:1,h2:2":                         "h1:1,h2:2",
	"redis://alice:pw@h:1/2":            "redis://alice:xxxxx@h:1/2",
	"redis://:pw@h:1":                   "redis://:xxxxx@h:1",
	"redis://pw@h:1":                    "redis://xxxxx@h:1",
	"redis://@h:1":                      "redis://@h:1",
	"redis://a:x@h1:1,redis://a:y@h2:2": "redis://a:xxxxx@h1:1,redis://a:xxxxx@h2:2",
	"redis://a:x@h1:1, redis://a:y@h2":  "redis://a:xxxxx@h1:1, redis://a:xxxxx@h2",
	"h1:1,redis://a:y@h2:2":             "h1:1,redis://a:xxxxx@h2:2",
	"redis-sentinel://s/m?sentinel_password=p&db=1":    "redis-sentinel://s/m?sentinel_password=xxxxx&db=1",
	"redis-sentinel://s/m?sentinel_password=p,q&db=1":  "redis-sentinel://s/m?sentinel_password=xxxxx&db=1",
	"redis://h:1?password=p,redis://h2:2":              "redis://h:1?password=xxxxx,redis://h2:2",
	"redis://h:1?password=p":                           "redis://h:1?password=xxxxx",
	"redis://h:1?password=p,q":                         "redis://h:1?password=xxxxx",
	"redis://h:1?Auth_Token=t&pool_size=3":             "redis://h:1?Auth_Token=xxxxx&pool_size=3",
	"redis://h:1?pass%77ord=p":                         "redis://h:1?pass%77ord=xxxxx",
	"redis://h:1?password=":                            "redis://h:1?password=",
	"redis://alice:p w{@h:1":                           "redis://alice:xxxxx@h:1",
	"redis://alice:p@ss@h:1":                           "redis://alice:xxxxx@h:1",
	"redis://alice:p/ss@h:1/2":                         "redis://alice:xxxxx@h:1/2",
	"redis://alice:p,ss@h1:1,h2:2":                     "redis://alice:xxxxx@h1:1,h2:2",
	"redis://h1:1?password=a@b":                        "redis://xxxxx",
	"alice:pw@h:1":                                     "xxxxx@h:1",
	"h0:1,alice:pw@h:1":                                "xxxxx@h:1",
	"unix://:pw@/run/redis.sock":                       "unix://:xxxxx@/run/redis.sock",
	"redis://a/b:pw@h":                                 "redis://xxxxx@h",
	"redis://:a://b@h":                                 "redis://xxxxx@h",
	"redis+sentinel://:pw@s1,s2/m?sentinel_password=x": "redis+sentinel://:xxxxx@s1,s2/m?sentinel_password=xxxxx",
}
