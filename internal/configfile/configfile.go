// Package configfile reads the rate_limiting: block of the original
// Python bot's config.yaml into a limiter.Config, for floodgate's
// --config: the bot's file works unchanged.
package configfile

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/floodgate/floodgate/limiter"
)

// maxConfigFile bounds what Read reads: a bot's config.yaml is a few
// kilobytes.
const maxConfigFile = 1 << 20

// configKeys maps each key of a rate_limiting: block to the index of its
// Config field: Floodgate's settings spelt as their FLOODGATE_ variable in
// lower case (redis_url excepted: a password belongs in the environment),
// max_tokens_per_user_hour as the original Python bot's config.yaml writes
// it. Durations are seconds (10, 0.5) or Go durations ("10s"). Any other
// "<name>_rate_limit" key is an external API's calls per second.
var configKeys = func() map[string]int {
	keys := map[string]int{}
	t := reflect.TypeFor[limiter.Config]()
	for i := range t.NumField() {
		tag := strings.ToLower(t.Field(i).Tag.Get("env"))
		switch t.Field(i).Type {
		case reflect.TypeFor[time.Duration](), reflect.TypeFor[int](), reflect.TypeFor[float64](), reflect.TypeFor[string]():
			if tag != "" && tag != "redis_url" {
				keys[cmp.Or(map[string]string{"user_token_budget": "max_tokens_per_user_hour"}[tag], tag)] = i
			}
		}
	}
	// Floodgate needs no sweeper: every key carries a TTL (at most
	// max_idle_time), so Redis drops idle users by itself. Accepted so the
	// bot's file works unchanged; its value is checked and ignored.
	keys[cleanupKey] = -1
	return keys
}()

const cleanupKey = "cleanup_interval"

const rateSuffix = "_rate_limit"

// Read reads path's rate_limiting: block over base. Other top-level
// sections (the bot's own settings) are ignored; inside the block an
// unknown key is an error naming it and its line. When the block names
// any <api>_rate_limit, those are the APIs (the defaults are dropped);
// each gets a burst of 1, as the original limiter allowed one call at a
// time. The result is not validated: the caller applies the environment
// (limiter.EnvOverrides), which validates.
func Read(path string, base limiter.Config) (limiter.Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return base, fmt.Errorf("configfile: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigFile+1))
	if err == nil && len(data) > maxConfigFile {
		err = fmt.Errorf("larger than %d bytes", maxConfigFile)
	}
	cfg := base
	if err == nil {
		cfg, err = parse(data, base)
	}
	if err != nil {
		return base, fmt.Errorf("configfile: %s: %w", path, err)
	}
	return cfg, nil
}

// Parse is Read on the file's bytes; its errors start "configfile: ".
func Parse(data []byte, base limiter.Config) (limiter.Config, error) {
	cfg, err := parse(data, base)
	if err != nil {
		return base, fmt.Errorf("configfile: %w", err)
	}
	return cfg, nil
}

func parse(data []byte, base limiter.Config) (limiter.Config, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return base, errors.New("empty file, want a rate_limiting: block")
		}
		return base, fmt.Errorf("not YAML: %v", err)
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return base, errors.New("the top level is not a mapping, want a rate_limiting: block")
	}
	var block *yaml.Node
	top := doc.Content[0]
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value == "rate_limiting" {
			block = top.Content[i+1]
		}
	}
	if block == nil {
		return base, errors.New("no rate_limiting: block")
	}
	if block.Kind != yaml.MappingNode {
		return base, fmt.Errorf("line %d: rate_limiting is not a mapping of settings", block.Line)
	}
	cfg := base
	rates := limiter.APIRates{}
	seen := map[string]bool{}
	for i := 0; i+1 < len(block.Content); i += 2 {
		k, v := block.Content[i], block.Content[i+1]
		key := k.Value
		if seen[key] {
			return base, fmt.Errorf("line %d: rate_limiting.%s is given twice", k.Line, key)
		}
		seen[key] = true
		if i, ok := configKeys[key]; ok {
			field := reflect.ValueOf(&cfg).Elem()
			if i < 0 {
				field = reflect.New(reflect.TypeFor[time.Duration]()).Elem()
			} else {
				field = field.Field(i)
			}
			if err := setKey(field, key, v); err != nil {
				return base, err
			}
			continue
		}
		if api, ok := strings.CutSuffix(key, rateSuffix); ok && api != "" {
			r, err := number(key, v)
			if err != nil {
				return base, err
			}
			rates[api] = limiter.APIRate{PerSecond: r, Burst: 1}
			continue
		}
		return base, fmt.Errorf("line %d: unknown key rate_limiting.%s (known: %s, and <api>%s)", k.Line, key, knownKeys(), rateSuffix)
	}
	if len(rates) > 0 {
		cfg.APIRates = rates
	}
	return cfg, nil
}

func knownKeys() string {
	keys := make([]string, 0, len(configKeys))
	for k := range configKeys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

func scalar(key string, v *yaml.Node) (string, error) {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		return "", fmt.Errorf("line %d: rate_limiting.%s must be a single value", v.Line, key)
	}
	return v.Value, nil
}

func number(key string, v *yaml.Node) (float64, error) {
	s, err := scalar(key, v)
	if err != nil {
		return 0, err
	}
	var f float64
	if v.Tag != "!!int" && v.Tag != "!!float" || v.Decode(&f) != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("line %d: rate_limiting.%s: %q is not a number", v.Line, key, s)
	}
	return f, nil
}

// setKey sets field (a duration, int, float64 or string) from v.
func setKey(field reflect.Value, key string, v *yaml.Node) error {
	s, err := scalar(key, v)
	if err != nil {
		return err
	}
	switch field.Interface().(type) {
	case time.Duration:
		var d time.Duration
		if v.Tag == "!!int" || v.Tag == "!!float" {
			f, err := number(key, v)
			if err != nil {
				return err
			}
			if math.Abs(f) > (100 * 365 * 24 * time.Hour).Seconds() {
				return fmt.Errorf("line %d: rate_limiting.%s: %s seconds is out of range", v.Line, key, s)
			}
			d = time.Duration(f * float64(time.Second))
		} else if d, err = time.ParseDuration(s); err != nil {
			return fmt.Errorf("line %d: rate_limiting.%s: %q is neither seconds nor a duration such as 10s", v.Line, key, s)
		}
		field.SetInt(int64(d))
	case int:
		var n int
		if v.Tag != "!!int" || v.Decode(&n) != nil {
			return fmt.Errorf("line %d: rate_limiting.%s: %q is not a whole number", v.Line, key, s)
		}
		field.SetInt(int64(n))
	case float64:
		f, err := number(key, v)
		if err != nil {
			return err
		}
		field.SetFloat(f)
	default:
		field.SetString(s)
	}
	return nil
}
