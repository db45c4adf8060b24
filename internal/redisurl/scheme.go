package redisurl

import "strings"

// The schemes of the multi-host forms; the value says whether TLS is on.
var (
	clusterSchemes  = map[string]bool{"redis-cluster": false, "redis+cluster": false, "rediss-cluster": true, "rediss+cluster": true}
	sentinelSchemes = map[string]bool{"redis-sentinel": false, "redis+sentinel": false, "rediss-sentinel": true, "rediss+sentinel": true}
)

// splitScheme splits "scheme://body"; a string without a scheme (host:port)
// gives "".
func splitScheme(s string) (scheme, body string) {
	i := strings.Index(s, "://")
	if i <= 0 {
		return "", s
	}
	for _, r := range s[:i] {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.') {
			return "", s
		}
	}
	return strings.ToLower(s[:i]), s[i+3:]
}
