// Command check renders each overlay under deploy/overlays with kustomize and checks what it
// gives, offline: every object is decoded strictly into its k8s.io/api type (an unknown or
// misspelled field is an error), KEDA's ScaledObject is validated against KEDA's CRD schema
// (schemas/), and the service's own rules are checked (rules.go): probes, resources, a non-root
// read-only container, a grace period longer than the service's shutdown, memory for the cache,
// references that resolve, selectors that select, a configuration the service would start with.
//
//	go run ./deploy/check                     check every overlay; exit 1 on any error
//	go run ./deploy/check production          check these overlays only
//	go run ./deploy/check -render production  print one overlay's manifests (for kubectl apply -f -)
//	go run ./deploy/check -env production     print each container's environment and configuration file
//
// An overlay's secrets.env is never committed: to check, an overlay without one is rendered with
// its secrets.env.example in its place (in memory); -render requires the real file.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

func main() {
	root := flag.String("root", "", "the repository's root (default: the nearest directory above that has deploy/overlays)")
	render := flag.String("render", "", "print the manifests of this overlay, with its real secrets.env, and check nothing")
	env := flag.String("env", "", "print, as JSON, what each container of this overlay starts with: its environment and its configuration file")
	flag.Parse()

	repo, err := findRoot(*root)
	if err != nil {
		fail(err)
	}
	if *render != "" {
		yaml, err := renderYAML(repo, *render)
		if err != nil {
			fail(err)
		}
		os.Stdout.Write(yaml)
		return
	}

	if *env != "" {
		if err := printEnv(repo, *env); err != nil {
			fail(err)
		}
		return
	}

	overlays := flag.Args()
	if len(overlays) == 0 {
		if overlays, err = listOverlays(repo); err != nil {
			fail(err)
		}
	}
	grace, err := shutdownGrace(repo)
	if err != nil {
		fail(err)
	}

	problems, objects := 0, 0
	for _, name := range overlays {
		report, err := checkOverlay(repo, name, grace)
		if err != nil {
			fmt.Printf("overlay %s: cannot render: %v\n", name, err)
			problems++
			continue
		}
		fmt.Printf("overlay %s: %d objects\n", name, len(report.objects))
		for _, o := range report.objects {
			fmt.Printf("  %s\n", o)
		}
		for _, n := range report.notes {
			fmt.Printf("  note: %s\n", n)
		}
		for _, p := range report.problems {
			fmt.Printf("  error: %s\n", p)
		}
		problems += len(report.problems)
		objects += len(report.objects)
	}
	if problems > 0 {
		fmt.Printf("%d error(s) in %d overlay(s)\n", problems, len(overlays))
		os.Exit(1)
	}
	fmt.Printf("ok: %d overlay(s), %d objects, no errors\n", len(overlays), objects)
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "deploy/check: %v\n", err)
	os.Exit(1)
}

// findRoot returns the given root, or the nearest directory at or above the working directory that
// has deploy/overlays (so that both `go run ./deploy/check` and `cd deploy/check && go run .` work).
func findRoot(given string) (string, error) {
	if given != "" {
		return filepath.Abs(given)
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if info, err := os.Stat(filepath.Join(dir, "deploy", "overlays")); err == nil && info.IsDir() {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no deploy/overlays here or in any directory above: give -root")
		}
		dir = parent
	}
}

func listOverlays(repo string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(repo, "deploy", "overlays"))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return nil, errors.New("deploy/overlays has no overlay")
	}
	return names, nil
}

// overlayDir accepts an overlay's name (production) or its path (deploy/overlays/production).
func overlayDir(repo, name string) string {
	if strings.ContainsRune(name, filepath.Separator) {
		if filepath.IsAbs(name) {
			return name
		}
		return filepath.Join(repo, name)
	}
	return filepath.Join(repo, "deploy", "overlays", name)
}

// printEnv prints, for each container of the overlay's Deployments, the environment it starts
// with (its Secrets' values included: from secrets.env.example where secrets.env is absent) and
// the configuration file CONFIG_FILE names, for the service's own validation to read.
func printEnv(repo, name string) error {
	r, rep, err := decodeOverlay(repo, name)
	if err != nil {
		return err
	}
	if len(rep.problems) > 0 {
		return errors.New(strings.Join(rep.problems, "\n"))
	}
	type container struct {
		Deployment string            `json:"deployment"`
		Container  string            `json:"container"`
		Env        map[string]string `json:"env"`
		ConfigFile string            `json:"configFile"`
	}
	var out []container
	for _, d := range r.deployments {
		for _, c := range d.Spec.Template.Spec.Containers {
			env, problems := containerEnv(c, r)
			if len(problems) > 0 {
				return errors.New(strings.Join(problems, "\n"))
			}
			text, err := configFileText(c, d.Spec.Template.Spec.Volumes, env, r)
			if err != nil {
				return err
			}
			out = append(out, container{Deployment: d.Name, Container: c.Name, Env: env, ConfigFile: text})
		}
	}
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetIndent("", "  ")
	return encoder.Encode(out)
}
