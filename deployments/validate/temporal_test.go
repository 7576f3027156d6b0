package validate

import (
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The values for Temporal's Helm chart: PostgreSQL for both stores with the password from a
// Secret, the dynamic config gpujobs relies on, and a frontend where gpujobs-config looks.
func TestTemporalHelmValues(t *testing.T) {
	var values struct {
		Server struct {
			Config struct {
				Persistence struct {
					DefaultStore    string `json:"defaultStore"`
					VisibilityStore string `json:"visibilityStore"`
					Datastores      map[string]struct {
						SQL map[string]any `json:"sql"`
					} `json:"datastores"`
				} `json:"persistence"`
			} `json:"config"`
			DynamicConfig map[string]any `json:"dynamicConfig"`
		} `json:"server"`
	}
	raw := readFile(t, "deployments/k8s/temporal/values.yaml")
	if err := yaml.Unmarshal(raw, &values); err != nil {
		t.Fatal(err)
	}
	p := values.Server.Config.Persistence
	dev := render(t, "dev")
	for _, store := range []string{p.DefaultStore, p.VisibilityStore} {
		sql := p.Datastores[store].SQL
		if sql == nil {
			t.Errorf("datastore %q is not SQL", store)
			continue
		}
		if sql["pluginName"] != "postgres12" {
			t.Errorf("datastore %s: pluginName %v, want postgres12", store, sql["pluginName"])
		}
		if _, inline := sql["password"]; inline {
			t.Errorf("datastore %s: a password in values; use existingSecret", store)
		}
		secret, _ := sql["existingSecret"].(string)
		key, _ := sql["secretKey"].(string)
		if s, ok := dev.secrets[secret]; !ok || len(s.Data[key]) == 0 {
			t.Errorf("datastore %s: existingSecret %q key %q is not what the dev overlay generates", store, secret, key)
		}
		host, _, _ := strings.Cut(sql["connectAddr"].(string), ":")
		if svc, ns, _ := strings.Cut(host, "."); dev.statefulSets[svc] == nil || !strings.HasPrefix(ns, namespace+".") {
			t.Errorf("datastore %s: connectAddr %v is not the dev overlay's PostgreSQL", store, sql["connectAddr"])
		}
	}
	dc, err := yaml.Marshal(values.Server.DynamicConfig)
	if err != nil {
		t.Fatal(err)
	}
	checkDynamicConfig(t, "values.yaml server.dynamicConfig", dc)

	// Release "temporal" names the frontend Service temporal-frontend.
	if addr := dev.configMap(t, "gpujobs-config").Data["TEMPORAL_ADDRESS"]; addr != "temporal-frontend."+namespace+".svc:7233" {
		t.Errorf("TEMPORAL_ADDRESS %q is not the frontend of the Helm release temporal in %s", addr, namespace)
	}
	var devValues map[string]any
	if err := yaml.Unmarshal(readFile(t, "deployments/k8s/temporal/values-dev.yaml"), &devValues); err != nil {
		t.Errorf("values-dev.yaml: %v", err)
	}
}
