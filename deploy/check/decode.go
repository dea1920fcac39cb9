package main

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/yaml"
)

// The kinds an overlay may hold, from k8s.io/api: any other kind is an error, not a pass.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme, networkingv1.AddToScheme, autoscalingv2.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// Strict: an unknown field (a misspelling, a field of another API version) or one given twice is
// an error, as the API server's strict field validation (kubectl apply --validate=strict) makes it.
var deserializer = serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()

// decodeStrict decodes one object from its JSON into its k8s.io/api type.
func decodeStrict(data []byte) (runtime.Object, error) {
	obj, _, err := deserializer.Decode(data, nil, nil)
	if err != nil {
		return nil, err
	}
	return obj, nil
}

// ScaledObject is the part of KEDA's ScaledObject (keda.sh/v1alpha1) the rules read; the whole
// object is validated against the CRD's schema first.
type ScaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32 `json:"minReplicaCount"`
		MaxReplicaCount *int32 `json:"maxReplicaCount"`
		Triggers        []struct {
			Type     string            `json:"type"`
			Metadata map[string]string `json:"metadata"`
		} `json:"triggers"`
	} `json:"spec"`
}

//go:embed schemas/keda.sh_scaledobjects.yaml
var scaledObjectCRD []byte

var scaledObjectSchema = func() *jsonschema.Schema {
	var crd struct {
		Spec struct {
			Versions []struct {
				Name   string `json:"name"`
				Schema struct {
					OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(scaledObjectCRD, &crd); err != nil {
		panic(fmt.Sprintf("schemas/keda.sh_scaledobjects.yaml: %v", err))
	}
	for _, v := range crd.Spec.Versions {
		if v.Name != "v1alpha1" {
			continue
		}
		doc := closeObjects(v.Schema.OpenAPIV3Schema)
		// Through JSON, so that numbers are what the validator expects.
		text, _ := json.Marshal(doc)
		value, err := jsonschema.UnmarshalJSON(bytes.NewReader(text))
		if err != nil {
			panic(err)
		}
		compiler := jsonschema.NewCompiler()
		if err := compiler.AddResource("file:///deploy/check/schemas/keda.sh_scaledobjects.yaml", value); err != nil {
			panic(err)
		}
		return compiler.MustCompile("file:///deploy/check/schemas/keda.sh_scaledobjects.yaml")
	}
	panic("schemas/keda.sh_scaledobjects.yaml has no version v1alpha1")
}()

// closeObjects makes every object with declared properties refuse others, as the API server's
// strict field validation does for a CRD (its structural schema would otherwise drop them
// silently); except where the schema keeps unknown fields (x-kubernetes-preserve-unknown-fields)
// or says what other properties may be (additionalProperties).
func closeObjects(node any) any {
	switch n := node.(type) {
	case map[string]any:
		for k, v := range n {
			n[k] = closeObjects(v)
		}
		_, hasProperties := n["properties"]
		_, hasAdditional := n["additionalProperties"]
		_, preserves := n["x-kubernetes-preserve-unknown-fields"]
		if hasProperties && !hasAdditional && !preserves {
			n["additionalProperties"] = false
		}
		return n
	case []any:
		for i, v := range n {
			n[i] = closeObjects(v)
		}
		return n
	default:
		return node
	}
}

// decodeScaledObject validates a ScaledObject against KEDA's schema, its metadata strictly as an
// ObjectMeta (the CRD leaves metadata to the API server), then reads what the rules need.
func decodeScaledObject(data []byte) (*ScaledObject, error) {
	value, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	if err := scaledObjectSchema.Validate(value); err != nil {
		return nil, fmt.Errorf("against KEDA's CRD schema: %s", strings.Join(strings.Fields(err.Error()), " "))
	}
	var raw struct {
		Metadata json.RawMessage `json:"metadata"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	var meta metav1.ObjectMeta
	strict := json.NewDecoder(bytes.NewReader(raw.Metadata))
	strict.DisallowUnknownFields()
	if err := strict.Decode(&meta); err != nil {
		return nil, fmt.Errorf("metadata: %v", err)
	}
	var so ScaledObject
	if err := json.Unmarshal(data, &so); err != nil {
		return nil, err
	}
	return &so, nil
}
