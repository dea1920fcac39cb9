package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// The service's defaults (src/config/AppConfig.ts) for the keys the rules read, where neither the
// configuration file nor the environment gives them.
var defaults = map[string]string{
	"http.port":                "8081",
	"http.shutdown_timeout":    "10 seconds",
	"http.workers":             "auto",
	"kafka.group_id":           "order-service",
	"kafka.topic":              "orders",
	"kafka.partitions":         "3",
	"cache.max_entries":        "100000",
	"cache.max_bytes":          "268435456",
	"live.max_clients":         "2000",
	"live.client_buffer_bytes": "262144",
	"auth.mode":                "required",
}

// settings is what one container of the service would read: its environment over the
// configuration file CONFIG_FILE names, over the defaults.
type settings struct {
	env  map[string]string
	file map[string]any
}

// envName is the variable that overrides a key, as AppConfig's envNameOf: http.shutdown_timeout
// is HTTP_SHUTDOWN_TIMEOUT.
func envName(key string) string {
	return strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

func (s settings) get(key string) (string, bool) {
	if v, ok := s.env[envName(key)]; ok {
		return v, true
	}
	var node any = s.file
	for _, part := range strings.Split(key, ".") {
		m, ok := node.(map[string]any)
		if !ok {
			node = nil
			break
		}
		node = m[part]
	}
	if node != nil {
		return fmt.Sprint(node), true
	}
	v, ok := defaults[key]
	return v, ok
}

func (s settings) int(key string) (int64, error) {
	v, _ := s.get(key)
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s (env %s): %q is not a whole number", key, envName(key), v)
	}
	return n, nil
}

func (s settings) duration(key string) (time.Duration, error) {
	v, _ := s.get(key)
	d, err := parseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s (env %s): %v", key, envName(key), err)
	}
	return d, nil
}

var durationPattern = regexp.MustCompile(`^(\d+(?:\.\d+)?)\s*(nanos?|micros?|millis?|seconds?|minutes?|hours?|days?|weeks?)$`)

// parseDuration reads a duration as Effect's Duration.decode does: "500 millis", "10 seconds".
func parseDuration(s string) (time.Duration, error) {
	m := durationPattern.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("%q is not a duration such as \"10 seconds\"", s)
	}
	n, _ := strconv.ParseFloat(m[1], 64)
	unit := map[string]time.Duration{
		"nano": time.Nanosecond, "micro": time.Microsecond, "milli": time.Millisecond, "second": time.Second,
		"minute": time.Minute, "hour": time.Hour, "day": 24 * time.Hour, "week": 7 * 24 * time.Hour,
	}[strings.TrimSuffix(m[2], "s")]
	return time.Duration(n * float64(unit)), nil
}

// containerEnv is the environment a container starts with: envFrom, then env over it, with the
// values of the ConfigMaps and Secrets in the overlay. A reference that does not resolve (and is
// not optional) is a problem: the pod would not start.
func containerEnv(c corev1.Container, r *rendered) (map[string]string, []string) {
	env := map[string]string{}
	var problems []string
	optional := func(b *bool) bool { return b != nil && *b }
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm, ok := r.configMaps[from.ConfigMapRef.Name]
			if !ok && !optional(from.ConfigMapRef.Optional) {
				problems = append(problems, fmt.Sprintf("envFrom: no ConfigMap %s in the overlay", from.ConfigMapRef.Name))
			}
			if ok {
				for k, v := range cm.Data {
					env[from.Prefix+k] = v
				}
			}
		case from.SecretRef != nil:
			secret, ok := r.secrets[from.SecretRef.Name]
			if !ok && !optional(from.SecretRef.Optional) {
				problems = append(problems, fmt.Sprintf("envFrom: no Secret %s in the overlay", from.SecretRef.Name))
			}
			if ok {
				for k, v := range secretData(secret) {
					env[from.Prefix+k] = v
				}
			}
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			secret, ok := r.secrets[ref.Name]
			value, has := "", false
			if ok {
				value, has = secretData(secret)[ref.Key]
			}
			if has {
				env[e.Name] = value
			} else if !optional(ref.Optional) {
				problems = append(problems, fmt.Sprintf("env %s: no key %s in Secret %s", e.Name, ref.Key, ref.Name))
			}
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			cm, ok := r.configMaps[ref.Name]
			value, has := "", false
			if ok {
				value, has = cm.Data[ref.Key]
			}
			if has {
				env[e.Name] = value
			} else if !optional(ref.Optional) {
				problems = append(problems, fmt.Sprintf("env %s: no key %s in ConfigMap %s", e.Name, ref.Key, ref.Name))
			}
		}
	}
	return env, problems
}

func secretData(s *corev1.Secret) map[string]string {
	out := map[string]string{}
	for k, v := range s.StringData {
		out[k] = v
	}
	for k, v := range s.Data {
		out[k] = string(v)
	}
	return out
}

// configFile finds the file CONFIG_FILE names among the container's ConfigMap volumes and parses
// it. Unset, the service would read the image's own file (config/config.docker.yaml: compose's
// hosts), not the overlay's.
func configFile(c corev1.Container, volumes []corev1.Volume, env map[string]string, r *rendered) (map[string]any, error) {
	text, err := configFileText(c, volumes, env, r)
	if err != nil {
		return nil, err
	}
	// Numbers kept as written (json.Number), not as floats: 268435456, not 2.68435456e+08.
	asJSON, err := yaml.YAMLToJSON([]byte(text))
	var parsed map[string]any
	if err == nil {
		decoder := json.NewDecoder(bytes.NewReader(asJSON))
		decoder.UseNumber()
		err = decoder.Decode(&parsed)
	}
	if err != nil {
		return nil, fmt.Errorf("CONFIG_FILE %s: %v", env["CONFIG_FILE"], err)
	}
	return parsed, nil
}

func configFileText(c corev1.Container, volumes []corev1.Volume, env map[string]string, r *rendered) (string, error) {
	file, ok := env["CONFIG_FILE"]
	if !ok || file == "" {
		return "", fmt.Errorf("CONFIG_FILE is not set: the service would read the image's config/config.docker.yaml")
	}
	for _, mount := range c.VolumeMounts {
		rel, err := filepath.Rel(mount.MountPath, file)
		if err != nil || strings.HasPrefix(rel, "..") || mount.SubPath != "" {
			continue
		}
		for _, v := range volumes {
			if v.Name != mount.Name || v.ConfigMap == nil {
				continue
			}
			cm, ok := r.configMaps[v.ConfigMap.Name]
			if !ok {
				return "", fmt.Errorf("volume %s: no ConfigMap %s in the overlay", v.Name, v.ConfigMap.Name)
			}
			key := rel
			if len(v.ConfigMap.Items) > 0 {
				key = ""
				for _, item := range v.ConfigMap.Items {
					if path.Clean(item.Path) == rel {
						key = item.Key
					}
				}
			}
			text, ok := cm.Data[key]
			if !ok {
				return "", fmt.Errorf("CONFIG_FILE %s: ConfigMap %s has no file %s", file, cm.Name, rel)
			}
			return text, nil
		}
	}
	return "", fmt.Errorf("CONFIG_FILE %s is on no ConfigMap volume the container mounts", file)
}

var shutdownGracePattern = regexp.MustCompile(`SHUTDOWN_GRACE\s*=\s*Duration\.seconds\((\d+)\)`)

// shutdownGrace is how long src/main.ts lets closing run past http.shutdown_timeout before the
// process exits regardless: read from the source, so that the two cannot drift apart.
func shutdownGrace(repo string) (time.Duration, error) {
	source, err := os.ReadFile(filepath.Join(repo, "src", "main.ts"))
	if err != nil {
		return 0, err
	}
	m := shutdownGracePattern.FindSubmatch(source)
	if m == nil {
		return 0, fmt.Errorf("src/main.ts: no `SHUTDOWN_GRACE = Duration.seconds(N)`; deploy/check reads the grace from it")
	}
	n, _ := strconv.Atoi(string(m[1]))
	return time.Duration(n) * time.Second, nil
}
