package main

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// rendered is an overlay's objects, decoded.
type rendered struct {
	deployments     []*appsv1.Deployment
	services        []*corev1.Service
	configMaps      map[string]*corev1.ConfigMap
	secrets         map[string]*corev1.Secret
	serviceAccounts map[string]*corev1.ServiceAccount
	pdbs            []*policyv1.PodDisruptionBudget
	networkPolicies []*networkingv1.NetworkPolicy
	scaledObjects   []*ScaledObject
}

type report struct {
	objects, notes, problems []string
}

func checkOverlay(repo, name string, grace time.Duration) (*report, error) {
	r, rep, err := decodeOverlay(repo, name)
	if err != nil {
		return nil, err
	}
	if len(rep.problems) > 0 {
		rep.notes = append(rep.notes, "the service's rules were not checked: an object did not decode")
		return rep, nil
	}
	rep.problems = checkRules(r, grace)
	return rep, nil
}

// decodeOverlay renders an overlay and decodes its objects; an object that does not decode is a
// problem in the report.
func decodeOverlay(repo, name string) (*rendered, *report, error) {
	resources, notes, err := renderForCheck(repo, name)
	if err != nil {
		return nil, nil, err
	}
	rep := &report{notes: notes}
	r := &rendered{
		configMaps:      map[string]*corev1.ConfigMap{},
		secrets:         map[string]*corev1.Secret{},
		serviceAccounts: map[string]*corev1.ServiceAccount{},
	}
	for _, res := range resources.Resources() {
		id := fmt.Sprintf("%s %s", res.GetKind(), res.GetName())
		if ns := res.GetNamespace(); ns != "" {
			id = fmt.Sprintf("%s %s/%s", res.GetKind(), ns, res.GetName())
		}
		rep.objects = append(rep.objects, id)
		data, err := res.MarshalJSON()
		if err != nil {
			rep.problems = append(rep.problems, fmt.Sprintf("%s: %v", id, err))
			continue
		}
		if res.GetGvk().Group == "keda.sh" && res.GetKind() == "ScaledObject" {
			if res.GetGvk().Version != "v1alpha1" {
				rep.problems = append(rep.problems, fmt.Sprintf("%s: KEDA serves ScaledObject as keda.sh/v1alpha1 only", id))
				continue
			}
			so, err := decodeScaledObject(data)
			if err != nil {
				rep.problems = append(rep.problems, fmt.Sprintf("%s: %v", id, err))
				continue
			}
			r.scaledObjects = append(r.scaledObjects, so)
			continue
		}
		obj, err := decodeStrict(data)
		if err != nil {
			rep.problems = append(rep.problems, fmt.Sprintf("%s: %v", id, err))
			continue
		}
		switch o := obj.(type) {
		case *appsv1.Deployment:
			r.deployments = append(r.deployments, o)
		case *corev1.Service:
			r.services = append(r.services, o)
		case *corev1.ConfigMap:
			r.configMaps[o.Name] = o
		case *corev1.Secret:
			r.secrets[o.Name] = o
		case *corev1.ServiceAccount:
			r.serviceAccounts[o.Name] = o
		case *policyv1.PodDisruptionBudget:
			r.pdbs = append(r.pdbs, o)
		case *networkingv1.NetworkPolicy:
			r.networkPolicies = append(r.networkPolicies, o)
		}
	}
	return r, rep, nil
}

// checkRules applies the service's own rules to a decoded overlay.
func checkRules(r *rendered, grace time.Duration) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if len(r.deployments) == 0 {
		add("no Deployment")
	}
	// Per Deployment: the orders topic's partitions, and the group members each pod runs.
	partitions, members := map[string]int64{}, map[string]int64{}
	for _, d := range r.deployments {
		where := "Deployment " + d.Name
		pod := d.Spec.Template.Spec
		podLabels := labels.Set(d.Spec.Template.Labels)

		// Pod-wide: its identity, its user, its seccomp profile, how long it may take to stop.
		if sa, ok := r.serviceAccounts[pod.ServiceAccountName]; !ok {
			add("%s: serviceAccountName %q: no such ServiceAccount in the overlay", where, pod.ServiceAccountName)
		} else if !isFalse(pod.AutomountServiceAccountToken) && !isFalse(sa.AutomountServiceAccountToken) {
			add("%s: the service account's token is mounted; the service never calls the Kubernetes API", where)
		}
		podSecurity := pod.SecurityContext
		if podSecurity == nil {
			podSecurity = &corev1.PodSecurityContext{}
		}
		gracePeriod := int64(30)
		if pod.TerminationGracePeriodSeconds != nil {
			gracePeriod = *pod.TerminationGracePeriodSeconds
		}

		for _, c := range pod.Containers {
			where := fmt.Sprintf("Deployment %s, container %s", d.Name, c.Name)
			env, envProblems := containerEnv(c, r)
			for _, p := range envProblems {
				add("%s: %s", where, p)
			}
			file, err := configFile(c, pod.Volumes, env, r)
			if err != nil {
				add("%s: %v", where, err)
			}
			s := settings{env: env, file: file}

			// Probes, on ports the container has.
			for name, probe := range map[string]*corev1.Probe{"livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe, "startupProbe": c.StartupProbe} {
				if probe == nil {
					add("%s: no %s", where, name)
				} else if probe.HTTPGet != nil && !hasPort(c, probe.HTTPGet.Port) {
					add("%s: %s on port %s, which the container does not declare", where, name, probe.HTTPGet.Port.String())
				}
			}
			if c.LivenessProbe != nil && c.LivenessProbe.HTTPGet != nil && c.LivenessProbe.HTTPGet.Path == "/readyz" {
				add("%s: livenessProbe on /readyz would restart a pod whose database or broker is down; /healthz", where)
			}

			// Resources.
			for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				req, hasReq := c.Resources.Requests[name]
				lim, hasLim := c.Resources.Limits[name]
				if !hasReq || !hasLim {
					add("%s: resources: %s needs both a request and a limit", where, name)
				} else if req.Cmp(lim) > 0 {
					add("%s: resources: %s request %s is above its limit %s", where, name, req.String(), lim.String())
				}
			}

			// A non-root, read-only, unprivileged container.
			security := c.SecurityContext
			if security == nil {
				security = &corev1.SecurityContext{}
			}
			if !isTrue(security.RunAsNonRoot) && !isTrue(podSecurity.RunAsNonRoot) {
				add("%s: runAsNonRoot is not true", where)
			}
			if (security.RunAsUser != nil && *security.RunAsUser == 0) || (security.RunAsUser == nil && podSecurity.RunAsUser != nil && *podSecurity.RunAsUser == 0) {
				add("%s: runs as uid 0", where)
			}
			if !isTrue(security.ReadOnlyRootFilesystem) {
				add("%s: readOnlyRootFilesystem is not true", where)
			}
			if !isFalse(security.AllowPrivilegeEscalation) {
				add("%s: allowPrivilegeEscalation is not false", where)
			}
			if security.Capabilities == nil || !containsCapability(security.Capabilities.Drop, "ALL") {
				add("%s: capabilities: ALL are not dropped", where)
			} else if len(security.Capabilities.Add) > 0 {
				add("%s: capabilities added: %v", where, security.Capabilities.Add)
			}
			seccomp := security.SeccompProfile
			if seccomp == nil {
				seccomp = podSecurity.SeccompProfile
			}
			if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
				add("%s: seccompProfile is not RuntimeDefault", where)
			}
			if tag := imageTag(c.Image); tag == "" || tag == "latest" {
				add("%s: image %q: name a tag or a digest, not latest", where, c.Image)
			}

			// The port the service listens on is the one declared.
			if port, err := s.int("http.port"); err != nil {
				add("%s: %v", where, err)
			} else if !hasPort(c, intstr.FromInt32(int32(port))) {
				add("%s: the service listens on %d (http.port), which the container does not declare", where, port)
			}

			processes, err := workers(c, s)
			if err != nil {
				add("%s: %v", where, err)
				processes = 1
			}

			// Closing: the pod must outlive the service's own deadline.
			if shutdown, err := s.duration("http.shutdown_timeout"); err != nil {
				add("%s: %v", where, err)
			} else {
				preStop := preStopSleep(c)
				need := preStop + shutdown + grace
				if processes > 1 {
					// src/main.ts: a primary outlasts its workers' own deadlines by 10 s.
					need += 10 * time.Second
				}
				if time.Duration(gracePeriod)*time.Second <= need {
					add("%s: terminationGracePeriodSeconds %d is not above preStop %s + http.shutdown_timeout %s + src/main.ts's grace %s = %s: the kubelet would kill the service while it drains",
						where, gracePeriod, preStop, shutdown, grace, need)
				}
			}
			if preStopSleep(c) == 0 {
				add("%s: no preStop sleep: requests can arrive after SIGTERM, before the endpoint is removed", where)
			}

			// Memory for the cache, its entries, live-feed backlogs, and the process.
			problems = append(problems, checkMemory(where, c, s, processes)...)

			// What the service would start with.
			problems = append(problems, checkStartup(where, s, env)...)
			if n, err := s.int("kafka.partitions"); err == nil {
				partitions[d.Name] = n
				members[d.Name] = processes
			}
			problems = append(problems, checkNetworkPolicies(where, c, podLabels, s, env, r.networkPolicies)...)
		}

		// The objects that name the pods select them.
		selected := 0
		for _, svc := range r.services {
			if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
				continue
			}
			selected++
			for _, p := range svc.Spec.Ports {
				if p.TargetPort.Type == intstr.String && !anyContainerHasPort(pod, p.TargetPort) {
					add("Service %s: targetPort %s is no port of Deployment %s", svc.Name, p.TargetPort.String(), d.Name)
				}
			}
		}
		if selected == 0 {
			add("%s: no Service selects its pods", where)
		}
		replicas := int32(1)
		if d.Spec.Replicas != nil {
			replicas = *d.Spec.Replicas
		}
		if len(r.pdbs) == 0 {
			add("%s: no PodDisruptionBudget", where)
		}
		for _, pdb := range r.pdbs {
			if !selects(pdb.Spec.Selector, podLabels) {
				add("PodDisruptionBudget %s does not select the pods of Deployment %s", pdb.Name, d.Name)
			}
			if pdb.Spec.MinAvailable != nil && pdb.Spec.MinAvailable.Type == intstr.Int && pdb.Spec.MinAvailable.IntVal >= replicas {
				add("PodDisruptionBudget %s: minAvailable %d with %d replicas: no pod could ever be evicted (a node drain would hang)", pdb.Name, pdb.Spec.MinAvailable.IntVal, replicas)
			}
		}
		if !isFalse(d.Spec.Template.Spec.EnableServiceLinks) {
			add("%s: enableServiceLinks is not false: a Service named like a config section (http, kafka…) would set its variables", where)
		}
	}

	for _, so := range r.scaledObjects {
		problems = append(problems, checkScaledObject(so, r, partitions, members)...)
	}
	return problems
}

func checkMemory(where string, c corev1.Container, s settings, processes int64) []string {
	var problems []string
	limit, ok := c.Resources.Limits[corev1.ResourceMemory]
	if !ok {
		return nil
	}
	var values [4]int64
	for i, key := range []string{"cache.max_bytes", "cache.max_entries", "live.max_clients", "live.client_buffer_bytes"} {
		n, err := s.int(key)
		if err != nil {
			return []string{fmt.Sprintf("%s: %v", where, err)}
		}
		values[i] = n
	}
	cacheBytes, entries, liveClients, clientBuffer := values[0], values[1], values[2], values[3]
	// Measured (BENCHMARKS.md): ~600 bytes an entry beside its JSON, 147 MB for the process with
	// nothing cached, ~70 MB of Kafka buffers in flight; 256 MiB covers the latter two and then some.
	const perEntry, process = 640, 256 << 20
	each := cacheBytes + entries*perEntry + liveClients*clientBuffer + process
	if need := processes * each; limit.Value() < need {
		problems = append(problems, fmt.Sprintf(
			"%s: memory limit %s is under %d process(es) × (cache.max_bytes %s + %d entries × %d B + live.max_clients %d × live.client_buffer_bytes %s + %s for the process) = %s",
			where, limit.String(), processes, mib(cacheBytes), entries, perEntry, liveClients, mib(clientBuffer), mib(process), mib(need)))
	}
	// Each process has a heap of its own, NODE_OPTIONS being inherited.
	if heap, ok := maxOldSpace(s.env["NODE_OPTIONS"]); ok {
		if heap <= cacheBytes {
			problems = append(problems, fmt.Sprintf("%s: NODE_OPTIONS --max-old-space-size %s does not hold cache.max_bytes %s", where, mib(heap), mib(cacheBytes)))
		}
		if processes*heap >= limit.Value()-128<<20 {
			problems = append(problems, fmt.Sprintf("%s: %d process(es) × NODE_OPTIONS --max-old-space-size %s leave under 128 MiB of the memory limit %s outside the heap",
				where, processes, mib(heap), limit.String()))
		}
	}
	return problems
}

// checkStartup: the settings the service refuses to start without, or would start wrongly
// without (no database.url or kafka.brokers: it would start its own embedded servers).
func checkStartup(where string, s settings, env map[string]string) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, where+": "+fmt.Sprintf(format, args...)) }
	if v, _ := s.get("database.url"); v == "" {
		add("database.url (env DATABASE_URL) is not set: the service would start an embedded PostgreSQL")
	} else if u, err := url.Parse(v); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		add("database.url (env DATABASE_URL) is not a postgres:// URL")
	}
	if v, _ := s.get("kafka.brokers"); v == "" {
		add("kafka.brokers (env KAFKA_BROKERS) is not set: the service would start a local broker")
	} else if _, err := brokerPorts(v); err != nil {
		add("kafka.brokers (env KAFKA_BROKERS): %v", err)
	}
	// AppConfig.checkAuth: on a network address, `required` needs a way to sign in.
	if mode, _ := s.get("auth.mode"); mode != "none" {
		issuer, _ := s.get("auth.oidc.issuer")
		keys, _ := s.get("auth.api_keys")
		secret, _ := s.get("auth.oidc.client_secret")
		if issuer == "" && keys == "" {
			add("auth.mode is %s but neither auth.oidc.issuer (AUTH_OIDC_ISSUER) nor auth.api_keys (AUTH_API_KEYS) is set: the service would refuse to start", mode)
		}
		if issuer != "" && secret == "" {
			add("auth.oidc.issuer is set but auth.oidc.client_secret (AUTH_OIDC_CLIENT_SECRET) is not: the service would refuse to start")
		}
	}
	return problems
}

// checkNetworkPolicies: a policy that selects the pods lets in the HTTP port and lets out DNS,
// PostgreSQL, Kafka and the OpenID provider, at the ports the configuration names.
func checkNetworkPolicies(where string, c corev1.Container, podLabels labels.Set, s settings, env map[string]string, policies []*networkingv1.NetworkPolicy) []string {
	var problems []string
	var applying []*networkingv1.NetworkPolicy
	for _, np := range policies {
		if selects(&np.Spec.PodSelector, podLabels) {
			applying = append(applying, np)
		}
	}
	if len(applying) == 0 {
		return []string{where + ": no NetworkPolicy selects its pods"}
	}
	httpPort, _ := s.int("http.port")
	if !anyAllows(applying, networkingv1.PolicyTypeIngress, int32(httpPort), c) {
		problems = append(problems, fmt.Sprintf("%s: no NetworkPolicy lets in port %d (http.port)", where, httpPort))
	}
	need := map[string][]int32{"DNS": {53}}
	if v, _ := s.get("database.url"); v != "" {
		if u, err := url.Parse(v); err == nil {
			need["PostgreSQL (DATABASE_URL)"] = []int32{portOf(u.Port(), 5432)}
		}
	}
	if v, _ := s.get("kafka.brokers"); v != "" {
		if ports, err := brokerPorts(v); err == nil {
			need["Kafka (KAFKA_BROKERS)"] = ports
		}
	}
	if v, _ := s.get("auth.oidc.issuer"); v != "" {
		if u, err := url.Parse(v); err == nil {
			fallback := int32(443)
			if u.Scheme == "http" {
				fallback = 80
			}
			need["the OpenID provider (AUTH_OIDC_ISSUER)"] = []int32{portOf(u.Port(), fallback)}
		}
	}
	names := make([]string, 0, len(need))
	for name := range need {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		for _, port := range need[name] {
			if !anyAllows(applying, networkingv1.PolicyTypeEgress, port, c) {
				problems = append(problems, fmt.Sprintf("%s: no NetworkPolicy lets out port %d, for %s", where, port, name))
			}
		}
	}
	return problems
}

var kafkaMetadata = map[string]bool{
	// KEDA 2.20's Kafka scaler (pkg/scalers/kafka_scaler.go): its trigger metadata.
	"bootstrapServers": true, "bootstrapServersFromEnv": true, "consumerGroup": true, "consumerGroupFromEnv": true,
	"topic": true, "topicFromEnv": true, "partitionLimitation": true, "lagThreshold": true,
	"activationLagThreshold": true, "offsetResetPolicy": true, "allowIdleConsumers": true,
	"excludePersistentLag": true, "scaleToZeroOnInvalidOffset": true, "limitToPartitionsWithLag": true,
	"ensureEvenDistributionOfPartitions": true, "version": true, "tls": true, "unsafeSsl": true, "sasl": true,
	"saslTokenProvider": true, "awsRegion": true,
}

func checkScaledObject(so *ScaledObject, r *rendered, partitions, members map[string]int64) []string {
	var problems []string
	where := "ScaledObject " + so.Name
	add := func(format string, args ...any) { problems = append(problems, where+": "+fmt.Sprintf(format, args...)) }
	ref := so.Spec.ScaleTargetRef
	var target *appsv1.Deployment
	for _, d := range r.deployments {
		if d.Name == ref.Name && (ref.Kind == "" || ref.Kind == "Deployment") {
			target = d
		}
	}
	if target == nil {
		add("scaleTargetRef %q: no such Deployment in the overlay", ref.Name)
		return problems
	}
	min, max := int32(1), int32(100) // KEDA's defaults
	if so.Spec.MinReplicaCount != nil {
		min = *so.Spec.MinReplicaCount
	}
	if so.Spec.MaxReplicaCount != nil {
		max = *so.Spec.MaxReplicaCount
	}
	if min > max {
		add("minReplicaCount %d is above maxReplicaCount %d", min, max)
	}
	if n, ok := partitions[target.Name]; ok && int64(max)*members[target.Name] > n {
		perPod := members[target.Name]
		add("maxReplicaCount %d × %d consumer process(es) a pod is above the orders topic's %d partitions (kafka.partitions): the replicas past %d would consume nothing",
			max, perPod, n, n/perPod)
	}
	for _, pdb := range r.pdbs {
		if selects(pdb.Spec.Selector, labels.Set(target.Spec.Template.Labels)) && pdb.Spec.MinAvailable != nil &&
			pdb.Spec.MinAvailable.Type == intstr.Int && pdb.Spec.MinAvailable.IntVal >= min {
			add("minReplicaCount %d is not above PodDisruptionBudget %s's minAvailable %d: scaled down, no pod could be evicted", min, pdb.Name, pdb.Spec.MinAvailable.IntVal)
		}
	}
	var container corev1.Container
	for _, c := range target.Spec.Template.Spec.Containers {
		container = c
		break
	}
	env, _ := containerEnv(container, r)
	file, _ := configFile(container, target.Spec.Template.Spec.Volumes, env, r)
	s := settings{env: env, file: file}
	for i, t := range so.Spec.Triggers {
		if t.Type != "kafka" {
			continue
		}
		tw := fmt.Sprintf("triggers[%d] (kafka)", i)
		keys := make([]string, 0, len(t.Metadata))
		for k := range t.Metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if !kafkaMetadata[k] {
				add("%s: metadata %q is not a setting of KEDA's Kafka scaler", tw, k)
			}
		}
		for _, k := range []string{"bootstrapServers", "consumerGroup", "topic"} {
			if t.Metadata[k] == "" && t.Metadata[k+"FromEnv"] == "" {
				add("%s: neither %s nor %sFromEnv is set", tw, k, k)
			}
			if name := t.Metadata[k+"FromEnv"]; name != "" && env[name] == "" {
				add("%s: %sFromEnv names %s, which container %s does not have", tw, k, name, container.Name)
			}
		}
		if group, _ := s.get("kafka.group_id"); t.Metadata["consumerGroup"] != "" && t.Metadata["consumerGroup"] != group {
			add("%s: consumerGroup %q is not the service's group %q (kafka.group_id)", tw, t.Metadata["consumerGroup"], group)
		}
		if topic, _ := s.get("kafka.topic"); t.Metadata["topic"] != "" && t.Metadata["topic"] != topic {
			add("%s: topic %q is not the service's %q (kafka.topic)", tw, t.Metadata["topic"], topic)
		}
		if v := t.Metadata["lagThreshold"]; v != "" {
			if n, err := strconv.ParseInt(v, 10, 64); err != nil || n < 1 {
				add("%s: lagThreshold %q is not a whole number ≥ 1", tw, v)
			}
		}
		if t.Metadata["allowIdleConsumers"] == "true" {
			add("%s: allowIdleConsumers lets KEDA add replicas that get no partition", tw)
		}
	}
	return problems
}

// workers is how many processes the container runs (http.workers): auto is one per core of its
// CPU limit, rounded up, as AppConfig counts them.
func workers(c corev1.Container, s settings) (int64, error) {
	v, _ := s.get("http.workers")
	if strings.TrimSpace(strings.ToLower(v)) == "auto" {
		limit, ok := c.Resources.Limits[corev1.ResourceCPU]
		if !ok {
			return 0, fmt.Errorf("http.workers is auto and the container has no CPU limit: set HTTP_WORKERS")
		}
		return (limit.MilliValue() + 999) / 1000, nil
	}
	n, err := s.int("http.workers")
	if err == nil && n < 1 {
		err = fmt.Errorf("http.workers (env HTTP_WORKERS): %d is not ≥ 1", n)
	}
	return n, err
}

func isTrue(b *bool) bool  { return b != nil && *b }
func isFalse(b *bool) bool { return b != nil && !*b }

func containsCapability(list []corev1.Capability, name corev1.Capability) bool {
	for _, c := range list {
		if c == name {
			return true
		}
	}
	return false
}

func hasPort(c corev1.Container, port intstr.IntOrString) bool {
	for _, p := range c.Ports {
		if (port.Type == intstr.String && p.Name == port.StrVal) || (port.Type == intstr.Int && p.ContainerPort == port.IntVal) {
			return true
		}
	}
	return false
}

func anyContainerHasPort(pod corev1.PodSpec, port intstr.IntOrString) bool {
	for _, c := range pod.Containers {
		if hasPort(c, port) {
			return true
		}
	}
	return false
}

func selects(selector *metav1.LabelSelector, set labels.Set) bool {
	if selector == nil {
		return false
	}
	// An empty selector selects every pod of the namespace (NetworkPolicy, policy/v1 PDB).
	s, err := metav1.LabelSelectorAsSelector(selector)
	return err == nil && s.Matches(set)
}

// anyAllows: whether traffic of this direction on this port is allowed by the policies (a policy
// that does not govern the direction allows it all; a rule without ports, every port).
func anyAllows(policies []*networkingv1.NetworkPolicy, direction networkingv1.PolicyType, port int32, c corev1.Container) bool {
	governed := false
	for _, np := range policies {
		types := np.Spec.PolicyTypes
		if len(types) == 0 {
			types = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
			if len(np.Spec.Egress) > 0 {
				types = append(types, networkingv1.PolicyTypeEgress)
			}
		}
		for _, t := range types {
			if t == direction {
				governed = true
			}
		}
		var ruleSets [][]networkingv1.NetworkPolicyPort
		if direction == networkingv1.PolicyTypeIngress {
			for _, rule := range np.Spec.Ingress {
				ruleSets = append(ruleSets, rule.Ports)
			}
		} else {
			for _, rule := range np.Spec.Egress {
				ruleSets = append(ruleSets, rule.Ports)
			}
		}
		for _, ports := range ruleSets {
			if len(ports) == 0 {
				return true
			}
			for _, p := range ports {
				if p.Port == nil {
					return true
				}
				if p.Port.Type == intstr.String {
					// A named port is the destination pod's: for ingress, ours.
					if direction == networkingv1.PolicyTypeIngress && hasPort(c, *p.Port) {
						for _, cp := range c.Ports {
							if cp.Name == p.Port.StrVal && cp.ContainerPort == port {
								return true
							}
						}
					}
					continue
				}
				end := p.Port.IntVal
				if p.EndPort != nil {
					end = *p.EndPort
				}
				if port >= p.Port.IntVal && port <= end {
					return true
				}
			}
		}
	}
	return !governed
}

func preStopSleep(c corev1.Container) time.Duration {
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		return 0
	}
	h := c.Lifecycle.PreStop
	if h.Sleep != nil {
		return time.Duration(h.Sleep.Seconds) * time.Second
	}
	if h.Exec != nil {
		cmd := h.Exec.Command
		if len(cmd) == 2 && (cmd[0] == "sleep" || cmd[0] == "/bin/sleep") {
			if n, err := strconv.Atoi(cmd[1]); err == nil {
				return time.Duration(n) * time.Second
			}
		}
	}
	return 0
}

var oldSpacePattern = regexp.MustCompile(`--max-old-space-size[= ](\d+)`)

func maxOldSpace(nodeOptions string) (int64, bool) {
	m := oldSpacePattern.FindStringSubmatch(nodeOptions)
	if m == nil {
		return 0, false
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n << 20, true
}

func imageTag(image string) string {
	if at := strings.Index(image, "@"); at >= 0 {
		return image[at+1:]
	}
	slash := strings.LastIndex(image, "/")
	if colon := strings.LastIndex(image, ":"); colon > slash {
		return image[colon+1:]
	}
	return ""
}

func brokerPorts(list string) ([]int32, error) {
	var ports []int32
	for _, b := range strings.Split(list, ",") {
		b = strings.TrimSpace(b)
		if b == "" {
			continue
		}
		_, port, err := net.SplitHostPort(b)
		if err != nil {
			return nil, fmt.Errorf("%q is not host:port", b)
		}
		n, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("%q is not host:port", b)
		}
		ports = append(ports, int32(n))
	}
	if len(ports) == 0 {
		return nil, fmt.Errorf("no broker")
	}
	return ports, nil
}

func portOf(port string, fallback int32) int32 {
	if n, err := strconv.Atoi(port); err == nil {
		return int32(n)
	}
	return fallback
}

func mib(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%d KiB", n>>10)
	}
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
