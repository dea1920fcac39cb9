package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// The base's ConfigMap is made from config/config.yaml, outside deploy/: kustomize must be allowed
// to read above the kustomization's folder (kubectl kustomize --load-restrictor=LoadRestrictionsNone).
func kustomizer() *krusty.Kustomizer {
	options := krusty.MakeDefaultOptions()
	options.LoadRestrictions = types.LoadRestrictionsNone
	return krusty.MakeKustomizer(options)
}

// renderYAML renders an overlay as it is on disk, its real secrets.env included.
func renderYAML(repo, name string) ([]byte, error) {
	dir := overlayDir(repo, name)
	if _, err := os.Stat(filepath.Join(dir, "secrets.env.example")); err == nil {
		if _, err := os.Stat(filepath.Join(dir, "secrets.env")); os.IsNotExist(err) {
			return nil, fmt.Errorf("%s has no secrets.env: copy its secrets.env.example and give each value its own", dir)
		}
	}
	resources, err := kustomizer().Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, err
	}
	return resources.AsYaml()
}

// renderForCheck renders an overlay from an in-memory copy of deploy/ and config/, where every
// folder that has a secrets.env.example and no secrets.env gets the example as its secrets.env.
// Returns the objects and a note for each example used.
func renderForCheck(repo, name string) (resmap.ResMap, []string, error) {
	memory := filesys.MakeFsInMemory()
	var notes []string
	for _, top := range []string{"deploy", "config"} {
		err := filepath.WalkDir(filepath.Join(repo, top), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if path == filepath.Join(repo, "deploy", "check") {
					return filepath.SkipDir
				}
				return memory.MkdirAll(path)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if err := memory.WriteFile(path, data); err != nil {
				return err
			}
			if d.Name() == "secrets.env.example" {
				real := filepath.Join(filepath.Dir(path), "secrets.env")
				mine := filepath.Dir(path) == overlayDir(repo, name) || filepath.Dir(path) == filepath.Join(repo, "deploy", "base")
				if _, err := os.Stat(real); os.IsNotExist(err) && mine {
					rel, _ := filepath.Rel(repo, real)
					notes = append(notes, fmt.Sprintf("%s absent: rendered with secrets.env.example", rel))
					return memory.WriteFile(real, data)
				}
			}
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
	}
	resources, err := kustomizer().Run(memory, overlayDir(repo, name))
	return resources, notes, err
}
