// Command gopeer is a peer of stash-webhook written with Go's standard library alone (net/http,
// crypto/tls, encoding/json), for benches/load.sh and benches/instructions.sh to measure on the
// same requests: the same rules for hook executors and Task references, judged against the same
// Functions and Tasks held in memory (catalog.json: manifests/examples/functions.yaml as JSON, the
// standard library reading no YAML), the same answer on the wire, denials and warnings logged and
// allowed reviews counted only.
//
// It is a benchmark, not a second webhook: no cluster source, no protection of Functions, no
// metrics endpoint, and the variables a Function reads are found by a simpler reader than
// Stash's own (enough for the catalog it ships with).
//
// Run: go build -o gopeer . && ./gopeer --listen 127.0.0.1:9443 --cert tls.crt --key tls.key
package main

import (
	"bytes"
	"crypto/tls"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

//go:embed catalog.json
var catalogJSON []byte

const (
	maxBodyBytes = 8 << 20
	maxLines     = 20
	shownChars   = 100
	listFuncs    = "list them with: kubectl get functions.stash.appscode.com"
	listTasks    = "kubectl get tasks.stash.appscode.com"
)

// Variables Stash sets for a hook's executor and for a Task's steps (src/functions/variables.rs).
var stashVariables = []string{
	"NAMESPACE", "BACKUP_SESSION", "RESTORE_SESSION",
	"REPOSITORY_NAME", "REPOSITORY_NAMESPACE", "REPOSITORY_PROVIDER",
	"REPOSITORY_SECRET_NAME", "REPOSITORY_SECRET_NAMESPACE", "REPOSITORY_BUCKET",
	"REPOSITORY_PREFIX", "REPOSITORY_ENDPOINT", "REPOSITORY_REGION", "MAX_CONNECTIONS",
	"HOSTNAME", "SOURCE_HOSTNAME", "INTERIM_DATA_DIR", "ENABLE_CACHE",
	"TARGET_NAME", "TARGET_KIND", "TARGET_NAMESPACE", "TARGET_MOUNT_PATH", "TARGET_PATHS",
	"TARGET_APP_REPLICAS", "DRIVER_ARGS", "EXCLUDE_PATTERNS", "INCLUDE_PATTERNS",
	"RESTORE_PATHS", "RESTORE_SNAPSHOTS",
	"RETENTION_KEEP_LAST", "RETENTION_KEEP_HOURLY", "RETENTION_KEEP_DAILY",
	"RETENTION_KEEP_WEEKLY", "RETENTION_KEEP_MONTHLY", "RETENTION_KEEP_YEARLY",
	"RETENTION_KEEP_TAGS", "RETENTION_PRUNE", "RETENTION_DRY_RUN",
	"INVOKER_KIND", "INVOKER_NAME", "ADDON_IMAGE",
	"STASH_DOCKER_REGISTRY", "STASH_DOCKER_IMAGE", "STASH_IMAGE_TAG", "LICENSE_APISERVICE",
	"PROMETHEUS_PUSHGATEWAY_URL", "PROMETHEUS_JOB_NAME",
}

var notFunctionInputs = []string{
	"TARGET_API_VERSION", "TARGET_RESOURCE", "TARGET_APP_VERSION", "TARGET_APP_TYPE",
	"TARGET_APP_GROUP", "TARGET_APP_RESOURCE", "HOOK_TYPE", "POD_ORDINAL", "POD_NAME",
	"NODE_NAME", "NICE_ADJUSTMENT", "IONICE_CLASS", "IONICE_CLASS_DATA", "REPOSITORY_URL",
	"ENABLE_STATUS_SUBRESOURCE",
}

func providedByStash(name string) bool {
	return slices.Contains(stashVariables, name) || slices.Contains(notFunctionInputs, name)
}

func providedForTask(name string) bool {
	return slices.Contains(stashVariables, name) || name == "ENABLE_STATUS_SUBRESOURCE"
}

// --- the catalog -------------------------------------------------------------------------------

type variable struct {
	name       string
	hasDefault bool
}

type function struct {
	problem   string // why it cannot run ("" when it can), and its fix
	fix       string
	variables []variable
}

type step struct {
	function string
	params   []string
}

type task struct {
	steps     []step
	variables []variable
}

type catalog struct {
	functions map[string]*function
	tasks     map[string]*task
}

var referencePattern = regexp.MustCompile(`\$\{#?([A-Za-z0-9_-]+)(:?[=-])?`)

// Image references as the distribution grammar writes them (host[:port]/path[:tag][@digest]).
var imagePattern = regexp.MustCompile(`^(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$`)

// variablesOf finds every ${NAME} of a decoded JSON value, keys included, each once; a name has a
// default only when every reference to it gives one.
func variablesOf(value any, into []variable) []variable {
	add := func(text string) {
		for _, m := range referencePattern.FindAllStringSubmatch(text, -1) {
			v := variable{name: m[1], hasDefault: m[2] != ""}
			if i := slices.IndexFunc(into, func(old variable) bool { return old.name == v.name }); i >= 0 {
				into[i].hasDefault = into[i].hasDefault && v.hasDefault
			} else {
				into = append(into, v)
			}
		}
	}
	switch v := value.(type) {
	case string:
		add(v)
	case []any:
		for _, item := range v {
			into = variablesOf(item, into)
		}
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			add(k)
			into = variablesOf(v[k], into)
		}
	}
	return into
}

func functionOf(name string, object map[string]any) *function {
	f := &function{variables: variablesOf(object, nil)}
	edit := "kubectl edit functions.stash.appscode.com " + name
	spec, _ := object["spec"].(map[string]any)
	switch image := spec["image"].(type) {
	case nil:
		f.problem = fmt.Sprintf("Function %q has no container image (its spec.image is not set)", name)
		f.fix = fmt.Sprintf("give the Function an image (%s), or name another Function", edit)
	case string:
		if image == "" {
			f.problem = fmt.Sprintf("Function %q has no container image (its spec.image is not set)", name)
			f.fix = fmt.Sprintf("give the Function an image (%s), or name another Function", edit)
		} else if !imagePattern.MatchString(referencePattern.ReplaceAllString(image, "x")) {
			f.problem = fmt.Sprintf("Function %q has an invalid container image %q", name, shown(image))
			f.fix = fmt.Sprintf("fix spec.image on the Function (%s)", edit)
		}
	default:
		f.problem = fmt.Sprintf("Function %q has an invalid container image: spec.image must be a string, got %s", name, jsonTypeOf(image))
		f.fix = fmt.Sprintf("fix spec.image on the Function (%s)", edit)
	}
	return f
}

func taskOf(object map[string]any) *task {
	t := &task{variables: variablesOf(object, nil)}
	spec, _ := object["spec"].(map[string]any)
	steps, _ := spec["steps"].([]any)
	for _, s := range steps {
		m, _ := s.(map[string]any)
		st := step{}
		st.function, _ = m["name"].(string)
		params, _ := m["params"].([]any)
		for _, p := range params {
			if pm, ok := p.(map[string]any); ok {
				if n, ok := pm["name"].(string); ok {
					st.params = append(st.params, n)
				}
			}
		}
		t.steps = append(t.steps, st)
	}
	return t
}

func loadCatalog() (*catalog, error) {
	var list struct {
		Items []map[string]any `json:"items"`
	}
	if err := json.Unmarshal(catalogJSON, &list); err != nil {
		return nil, err
	}
	c := &catalog{functions: map[string]*function{}, tasks: map[string]*task{}}
	for _, item := range list.Items {
		meta, _ := item["metadata"].(map[string]any)
		name, _ := meta["name"].(string)
		switch item["kind"] {
		case "Function":
			c.functions[name] = functionOf(name, item)
		case "Task":
			c.tasks[name] = taskOf(item)
		}
	}
	return c, nil
}

// --- the review --------------------------------------------------------------------------------

type gvk struct {
	Group   string `json:"group"`
	Version string `json:"version"`
	Kind    string `json:"kind"`
}

type hook struct {
	Executor json.RawMessage `json:"executor"`
}

type hooks struct {
	PreBackup   *hook `json:"preBackup"`
	PostBackup  *hook `json:"postBackup"`
	PreRestore  *hook `json:"preRestore"`
	PostRestore *hook `json:"postRestore"`
}

type member struct {
	Hooks hooks           `json:"hooks"`
	Task  json.RawMessage `json:"task"`
}

type spec struct {
	Hooks   hooks           `json:"hooks"`
	Members []member        `json:"members"`
	Task    json.RawMessage `json:"task"`
}

type object struct {
	Spec spec `json:"spec"`
}

type request struct {
	UID       string  `json:"uid"`
	Kind      gvk     `json:"kind"`
	Name      string  `json:"name"`
	Namespace string  `json:"namespace"`
	Operation string  `json:"operation"`
	Object    *object `json:"object"`
	OldObject *object `json:"oldObject"`
	DryRun    bool    `json:"dryRun"`
}

type review struct {
	Kind       string   `json:"kind"`
	APIVersion string   `json:"apiVersion"`
	Request    *request `json:"request"`
}

type status struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Code    int    `json:"code,omitempty"`
}

type response struct {
	UID      string   `json:"uid"`
	Allowed  bool     `json:"allowed"`
	Status   status   `json:"status"`
	Warnings []string `json:"warnings,omitempty"`
}

type answer struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Response   response `json:"response"`
}

// decode reads a review; a value of an unexpected shape inside a spec is passed over, as the
// webhook does (the CRD schema is the API server's job), anything else wrong is an error.
func decode(body []byte) (*review, error) {
	var r review
	if err := json.Unmarshal(body, &r); err != nil {
		var typeErr *json.UnmarshalTypeError
		if !errors.As(err, &typeErr) || !strings.Contains(typeErr.Field, ".spec") {
			return nil, err
		}
	}
	if r.Kind != "AdmissionReview" {
		return nil, fmt.Errorf("kind is %q: expected \"AdmissionReview\"", r.Kind)
	}
	if r.APIVersion != "admission.k8s.io/v1" && r.APIVersion != "admission.k8s.io/v1beta1" {
		return nil, fmt.Errorf("apiVersion %q is not supported", r.APIVersion)
	}
	if r.Request == nil {
		return nil, errors.New("the AdmissionReview has no request")
	}
	return &r, nil
}

// --- references --------------------------------------------------------------------------------

var kinds = map[string]struct{ restore, batch bool }{
	"BackupConfiguration": {},
	"RestoreSession":      {restore: true},
	"BackupBatch":         {batch: true},
	"RestoreBatch":        {restore: true, batch: true},
	"BackupBlueprint":     {},
}

type executor struct {
	path      string
	wrongType string // the JSON type when executor is not a map
	name      string
	nameState int // 0 named, 1 missing, 2 wrong type
	nameType  string
	params    []string
	paramsSet bool
	paramType string // the JSON type when params is not a map
}

type taskRef struct {
	path       string
	name       string
	nameType   string // the JSON type when name is not a string
	params     []*string
	paramsType string
}

func jsonType(raw json.RawMessage) string {
	switch raw[0] {
	case '{':
		return "a map"
	case '[':
		return "a list"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

func jsonTypeOf(v any) string {
	switch v.(type) {
	case map[string]any:
		return "a map"
	case []any:
		return "a list"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	default:
		return "a number"
	}
}

func isNull(raw json.RawMessage) bool { return len(raw) == 0 || string(raw) == "null" }

func readExecutor(path string, raw json.RawMessage) executor {
	e := executor{path: path}
	if raw[0] != '{' {
		e.wrongType = jsonType(raw)
		return e
	}
	var fields map[string]json.RawMessage
	_ = json.Unmarshal(raw, &fields)
	switch name := fields["functionName"]; {
	case isNull(name):
		e.nameState = 1
	case name[0] == '"':
		_ = json.Unmarshal(name, &e.name)
	default:
		e.nameState, e.nameType = 2, jsonType(name)
	}
	switch params := fields["params"]; {
	case isNull(params):
	case params[0] == '{':
		var keys map[string]json.RawMessage
		_ = json.Unmarshal(params, &keys)
		for k := range keys {
			e.params = append(e.params, k)
		}
		sort.Strings(e.params)
		e.paramsSet = true
	default:
		e.paramType = jsonType(params)
	}
	return e
}

func readTask(path string, raw json.RawMessage) *taskRef {
	if isNull(raw) || raw[0] != '{' {
		return nil
	}
	var fields map[string]json.RawMessage
	_ = json.Unmarshal(raw, &fields)
	t := &taskRef{path: path}
	switch name := fields["name"]; {
	case isNull(name):
		return nil
	case name[0] == '"':
		_ = json.Unmarshal(name, &t.name)
		if t.name == "" {
			return nil
		}
	default:
		t.nameType = jsonType(name)
	}
	switch params := fields["params"]; {
	case isNull(params):
	case params[0] == '[':
		var items []json.RawMessage
		_ = json.Unmarshal(params, &items)
		for _, item := range items {
			var p struct {
				Name *string `json:"name"`
			}
			if item[0] == '{' && json.Unmarshal(item, &p) == nil {
				t.params = append(t.params, p.Name)
			} else {
				t.params = append(t.params, nil)
			}
		}
	default:
		t.paramsType = jsonType(params)
	}
	return t
}

func executorsOf(kind string, s *spec) []executor {
	k := kinds[kind]
	names := []string{"preBackup", "postBackup"}
	if k.restore {
		names = []string{"preRestore", "postRestore"}
	}
	var out []executor
	collect := func(h *hooks, prefix string) {
		for _, name := range names {
			var hk *hook
			switch name {
			case "preBackup":
				hk = h.PreBackup
			case "postBackup":
				hk = h.PostBackup
			case "preRestore":
				hk = h.PreRestore
			case "postRestore":
				hk = h.PostRestore
			}
			if hk != nil && !isNull(hk.Executor) {
				out = append(out, readExecutor(prefix+".hooks."+name+".executor", hk.Executor))
			}
		}
	}
	collect(&s.Hooks, "spec")
	if k.batch {
		for i := range s.Members {
			collect(&s.Members[i].Hooks, fmt.Sprintf("spec.members[%d]", i))
		}
	}
	return out
}

func tasksOf(kind string, s *spec) []*taskRef {
	var out []*taskRef
	if !kinds[kind].batch {
		if t := readTask("spec.task", s.Task); t != nil {
			out = append(out, t)
		}
		return out
	}
	for i := range s.Members {
		if t := readTask(fmt.Sprintf("spec.members[%d].task", i), s.Members[i].Task); t != nil {
			out = append(out, t)
		}
	}
	return out
}

// --- rules -------------------------------------------------------------------------------------

type verdict struct {
	denials  []string
	warnings []string
}

// add records one problem: a warning when the stored object had the same reference (kept).
func (v *verdict) add(path, what, fix string, kept bool, reference string) {
	if kept {
		v.warnings = append(v.warnings, fmt.Sprintf("%s: %s; allowed because this reference is unchanged, but %s will fail until it is fixed", path, what, reference))
		return
	}
	v.denials = append(v.denials, path+": "+what+": "+fix)
}

func shown(value string) string {
	runes := []rune(value)
	if len(runes) <= shownChars {
		return value
	}
	return fmt.Sprintf("%s... (%d characters)", string(runes[:shownChars]), len(runes))
}

func validObjectName(name string) bool {
	if len(name) > 253 {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func validParamName(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return name != ""
}

func distance(a, b string) int {
	br := []rune(b)
	row := make([]int, len(br)+1)
	for i := range row {
		row[i] = i
	}
	for i, ca := range []rune(a) {
		diagonal, left := i, i+1
		for j, cb := range br {
			up := row[j+1]
			if ca == cb {
				row[j+1] = diagonal
			} else {
				row[j+1] = 1 + min(diagonal, up, left)
			}
			diagonal, left = up, row[j+1]
		}
		row[0] = i + 1
	}
	return row[len(row)-1]
}

func whatItReads(key string, read []string) string {
	if len(read) == 0 {
		return "it reads no variables"
	}
	names := slices.Clone(read)
	sort.SliceStable(names, func(i, j int) bool {
		di, dj := distance(key, names[i]), distance(key, names[j])
		return di < dj || di == dj && names[i] < names[j]
	})
	more := ""
	if len(names) > 5 {
		names, more = names[:5], ", ..."
	}
	for i := range names {
		names[i] = shown(names[i])
	}
	return "it reads " + strings.Join(names, ", ") + more
}

func (c *catalog) judgeExecutors(refs, old []executor, v *verdict) {
	before := map[string]*executor{}
	for i := range old {
		before[old[i].path] = &old[i]
	}
	for i := range refs {
		r := &refs[i]
		b := before[r.path]
		sameFunction := b != nil && b.wrongType == r.wrongType && b.nameState == r.nameState && b.name == r.name && b.nameType == r.nameType
		sameExecutor := sameFunction && slices.Equal(b.params, r.params) && b.paramType == r.paramType
		hadParam := func(key string) bool { return b != nil && slices.Contains(b.params, key) }
		if r.wrongType != "" {
			v.add(r.path, "must be a map, got "+r.wrongType, "write executor: {functionName: NAME, params: {KEY: VALUE}}", sameFunction, "the hook")
			continue
		}
		namePath := r.path + ".functionName"
		nameFix := "name the Function that runs this hook (" + listFuncs + ")"
		switch {
		case r.nameState == 1:
			v.add(namePath, "is required", nameFix, sameFunction, "the hook")
		case r.nameState == 2:
			v.add(namePath, "must be a string, got "+r.nameType, nameFix, sameFunction, "the hook")
		case r.name == "":
			v.add(namePath, "must not be empty", nameFix, sameFunction, "the hook")
		case !validObjectName(r.name):
			v.add(namePath, fmt.Sprintf("%q is not a valid Function name: Kubernetes names are lowercase letters, digits, '-' and '.', start and end with a letter or digit, and are at most 253 characters", shown(r.name)), nameFix, sameFunction, "the hook")
		default:
			f, found := c.functions[r.name]
			if !found {
				v.add(namePath, fmt.Sprintf("Function %q not found", r.name), "create the Function, or fix the name ("+listFuncs+")", sameFunction, "the hook")
				break
			}
			if f.problem != "" {
				v.add(namePath, f.problem, f.fix, sameFunction, "the hook")
			}
			if r.paramType != "" {
				break
			}
			for _, variable := range f.variables {
				if variable.hasDefault || slices.Contains(r.params, variable.name) || providedByStash(variable.name) {
					continue
				}
				name := shown(variable.name)
				v.add(r.path+".params", fmt.Sprintf("Function %q reads ${%s}, which this hook does not set and Stash does not provide", r.name, name),
					fmt.Sprintf("add params.%s, or give it a default in the Function (${%s:=...})", name, name), sameExecutor, "the hook")
			}
			read := make([]string, len(f.variables))
			for i, variable := range f.variables {
				read[i] = variable.name
			}
			for _, key := range r.params {
				if slices.Contains(read, key) || !validParamName(key) {
					continue
				}
				v.warnings = append(v.warnings, fmt.Sprintf("%s.params[%s]: Function %q does not read ${%s} (%s): check the name", r.path, shown(key), r.name, shown(key), whatItReads(key, read)))
			}
		}
		if r.paramType != "" {
			v.add(r.path+".params", "must be a map of parameter names to string values, got "+r.paramType, "write params: {KEY: VALUE}", b != nil && b.paramType != "", "the hook")
		}
		for _, key := range r.params {
			what := ""
			if key == "" {
				what = "parameter name must not be empty"
			} else if !validParamName(key) {
				what = fmt.Sprintf("parameter name %q is invalid", shown(key))
			} else {
				continue
			}
			v.add(fmt.Sprintf("%s.params[%s]", r.path, shown(key)), what, "use letters, digits and '_', not starting with a digit, since the Function reads it as ${NAME}", hadParam(key), "the hook")
		}
	}
}

func sameTask(a, b *taskRef) bool {
	if a == nil || b == nil || a.name != b.name || a.nameType != b.nameType || a.paramsType != b.paramsType || len(a.params) != len(b.params) {
		return false
	}
	for i := range a.params {
		if (a.params[i] == nil) != (b.params[i] == nil) || a.params[i] != nil && *a.params[i] != *b.params[i] {
			return false
		}
	}
	return true
}

func (c *catalog) judgeTasks(kind string, uses, old []*taskRef, v *verdict) {
	before := map[string]*taskRef{}
	for _, u := range old {
		before[u.path] = u
	}
	for _, u := range uses {
		b := before[u.path]
		keptTask := b != nil && b.name == u.name && b.nameType == u.nameType
		keptInputs := sameTask(b, u)
		namePath, paramsPath := u.path+".name", u.path+".params"
		nameFix := "name the Task that runs it (list those installed with: " + listTasks + ")"
		if u.paramsType != "" {
			v.add(paramsPath, "must be a list of {name, value}, got "+u.paramsType, "write params: [{name: NAME, value: VALUE}]", keptInputs, "the task")
		}
		if u.nameType != "" {
			v.add(namePath, "must be a string, got "+u.nameType, nameFix, keptTask, "the task")
			continue
		}
		name := u.name
		if kind == "BackupBlueprint" && strings.Contains(name, "${") {
			v.warnings = append(v.warnings, fmt.Sprintf("%s: Task %q is filled in per target when Stash creates each BackupConfiguration from this blueprint: not checked here", namePath, shown(name)))
			continue
		}
		if !validObjectName(name) {
			v.add(namePath, fmt.Sprintf("%q is not a valid Task name: Kubernetes names are lowercase letters, digits, '-' and '.', start and end with a letter or digit, and are at most 253 characters", shown(name)), nameFix, keptTask, "the task")
			continue
		}
		t, found := c.tasks[name]
		if !found {
			v.add(namePath, fmt.Sprintf("Task %q not found", name), "install the Stash addon that provides it ("+listTasks+" lists those installed), or correct the name", keptTask, "the task")
			continue
		}
		if len(t.steps) == 0 {
			v.add(namePath, fmt.Sprintf("Task %q has no steps, so Stash refuses to run it (\"empty steps/containers\")", name),
				fmt.Sprintf("give the Task steps (kubectl edit tasks.stash.appscode.com %s), or name another Task", name), keptTask, "the task")
			continue
		}
		allFound := true
		type stepFunction struct {
			index int
			name  string
			f     *function
		}
		var stepFunctions []stepFunction
		for i, s := range t.steps {
			at := func() string { return fmt.Sprintf("Task %q, at its spec.steps[%d].name", name, i) }
			fixTask := func() string {
				return fmt.Sprintf("fix the Task (kubectl edit tasks.stash.appscode.com %s), or name another Task", name)
			}
			switch f, found := c.functions[s.function]; {
			case s.function == "":
				allFound = false
				v.add(namePath, at()+": no Function is named", fixTask(), keptTask, "the task")
			case !validObjectName(s.function):
				allFound = false
				v.add(namePath, fmt.Sprintf("%s: %q is not a valid Function name", at(), shown(s.function)), fixTask(), keptTask, "the task")
			case !found:
				allFound = false
				v.add(namePath, fmt.Sprintf("%s: Function %q not found", at(), s.function), "create the Function, or fix the Task ("+listFuncs+")", keptTask, "the task")
			default:
				if f.problem != "" {
					v.add(namePath, at()+": "+f.problem, f.fix, keptTask, "the task")
				}
				stepFunctions = append(stepFunctions, stepFunction{i, s.function, f})
			}
		}
		var given []string
		for _, p := range u.params {
			if p != nil {
				given = append(given, *p)
			}
		}
		inputsFix := func(variable, in string) string {
			return fmt.Sprintf("add {name: %s, value: ...} to %s, or give it a default in the %s (${%s:=...})", variable, paramsPath, in, variable)
		}
		for _, variable := range t.variables {
			if variable.hasDefault || slices.Contains(given, variable.name) || providedForTask(variable.name) {
				continue
			}
			shownName := shown(variable.name)
			v.add(paramsPath, fmt.Sprintf("Task %q reads ${%s}, which %s does not set and Stash does not provide", name, shownName, paramsPath), inputsFix(shownName, "Task"), keptInputs, "the task")
		}
		for _, sf := range stepFunctions {
			for _, variable := range sf.f.variables {
				if variable.hasDefault || slices.Contains(t.steps[sf.index].params, variable.name) || slices.Contains(given, variable.name) || providedForTask(variable.name) {
					continue
				}
				shownName := shown(variable.name)
				v.add(paramsPath, fmt.Sprintf("Function %q (Task %q, spec.steps[%d]) reads ${%s}, which neither that step's params nor %s set and Stash does not provide", sf.name, name, sf.index, shownName, paramsPath), inputsFix(shownName, "Function"), keptInputs, "the task")
			}
		}
		if allFound {
			var read []string
			for _, variable := range t.variables {
				read = append(read, variable.name)
			}
			for _, sf := range stepFunctions {
				for _, variable := range sf.f.variables {
					read = append(read, variable.name)
				}
			}
			sort.Strings(read)
			read = slices.Compact(read)
			for i, p := range u.params {
				if p == nil || slices.Contains(read, *p) {
					continue
				}
				v.warnings = append(v.warnings, fmt.Sprintf("%s[%d]: no step of Task %q reads ${%s} (%s): check the name", paramsPath, i, name, shown(*p), strings.Replace(whatItReads(*p, read), "it reads", "they read", 1)))
			}
		}
	}
}

func capped(lines []string, what string) []string {
	if len(lines) <= maxLines {
		return lines
	}
	more := len(lines) - maxLines
	return append(lines[:maxLines:maxLines], fmt.Sprintf("... and %d more %s, not listed (stash-webhook check -f FILE lists them all)", more, what))
}

// --- the server --------------------------------------------------------------------------------

type server struct {
	catalog *catalog
	// Reviews answered, by verdict (allowed, warned, denied), and lookups made.
	reviews [3]atomic.Uint64
	lookups atomic.Uint64
}

func (s *server) judge(r *request) response {
	out := response{UID: r.UID, Allowed: true}
	_, judged := kinds[r.Kind.Kind]
	if r.Kind.Group != "stash.appscode.com" || r.Kind.Version != "v1beta1" || !judged ||
		(r.Operation != "CREATE" && r.Operation != "UPDATE") {
		s.reviews[0].Add(1)
		return out
	}
	if r.Object == nil {
		s.reviews[2].Add(1)
		return deny(out, fmt.Sprintf("%s %s has no object to judge: the request is malformed", r.Kind.Kind, r.Name))
	}
	refs, uses := executorsOf(r.Kind.Kind, &r.Object.Spec), tasksOf(r.Kind.Kind, &r.Object.Spec)
	var oldRefs []executor
	var oldUses []*taskRef
	if r.Operation == "UPDATE" && r.OldObject != nil {
		oldRefs, oldUses = executorsOf(r.Kind.Kind, &r.OldObject.Spec), tasksOf(r.Kind.Kind, &r.OldObject.Spec)
	}
	s.lookups.Add(uint64(len(refs) + len(uses)))
	var v verdict
	s.catalog.judgeExecutors(refs, oldRefs, &v)
	s.catalog.judgeTasks(r.Kind.Kind, uses, oldUses, &v)
	if len(v.denials) > 0 {
		s.reviews[2].Add(1)
		out = deny(out, strings.Join(capped(v.denials, "problems"), "\n"))
		out.Warnings = capped(v.warnings, "warnings")
		return out
	}
	if len(v.warnings) > 0 {
		s.reviews[1].Add(1)
		out.Warnings = capped(v.warnings, "warnings")
		return out
	}
	s.reviews[0].Add(1)
	return out
}

func deny(out response, message string) response {
	out.Allowed = false
	out.Status = status{Status: "Failure", Message: message, Reason: "Forbidden", Code: 403}
	return out
}

func refuse(w http.ResponseWriter, code int, message string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, message+"\n")
}

func (s *server) validate(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		refuse(w, http.StatusMethodNotAllowed, "use POST to send an AdmissionReview")
		return
	}
	media, _, _ := strings.Cut(req.Header.Get("Content-Type"), ";")
	if !strings.EqualFold(strings.TrimSpace(media), "application/json") {
		refuse(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json: POST an AdmissionReview as JSON")
		return
	}
	var body bytes.Buffer
	if req.ContentLength > 0 && req.ContentLength <= maxBodyBytes {
		body.Grow(int(req.ContentLength))
	}
	if _, err := body.ReadFrom(http.MaxBytesReader(w, req.Body, maxBodyBytes)); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			refuse(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than the %d byte limit", maxBodyBytes))
		} else {
			refuse(w, http.StatusBadRequest, "cannot read the body: "+err.Error())
		}
		return
	}
	started := time.Now()
	r, err := decode(body.Bytes())
	if err != nil {
		refuse(w, http.StatusBadRequest, "the body is not a valid AdmissionReview: "+err.Error())
		return
	}
	out := s.judge(r.Request)
	if !out.Allowed || len(out.Warnings) > 0 {
		slog.Info("review", "uid", r.Request.UID, "kind", r.Request.Kind.Kind, "namespace", r.Request.Namespace,
			"name", r.Request.Name, "operation", r.Request.Operation, "dry_run", r.Request.DryRun,
			"allowed", out.Allowed, "latency_us", time.Since(started).Microseconds(), "denial", out.Status.Message)
	}
	encoded, err := json.Marshal(answer{APIVersion: r.APIVersion, Kind: "AdmissionReview", Response: out})
	if err != nil {
		refuse(w, http.StatusInternalServerError, "cannot encode the response")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(encoded)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:9443", "address to listen on")
	cert := flag.String("cert", "", "serving certificate (PEM)")
	key := flag.String("key", "", "its private key (PEM)")
	flag.Parse()
	if *cert == "" || *key == "" {
		fmt.Fprintln(os.Stderr, "usage: gopeer --listen ADDR --cert PATH --key PATH")
		os.Exit(2)
	}
	c, err := loadCatalog()
	if err != nil {
		log.Fatalf("catalog.json: %v", err)
	}
	s := &server{catalog: c}
	mux := http.NewServeMux()
	mux.HandleFunc("/validate", s.validate)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	srv := &http.Server{
		Addr:              *listen,
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       10 * time.Second,
		IdleTimeout:       120 * time.Second,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12},
	}
	fmt.Fprintf(os.Stderr, "go peer on https://%s (%d Functions, %d Tasks)\n", *listen, len(c.functions), len(c.tasks))
	log.Fatal(srv.ListenAndServeTLS(*cert, *key))
}
