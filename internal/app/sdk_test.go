package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/auth"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// The clients below do on the wire what ZStack's own SDKs do (read from their sources:
// ZSClient.java and ApiResult.java of the Java SDK, zssdk.py of the Python SDK,
// zstack_http_client.go of terraform-zstack-modules/zstack-sdk-go): the headers each sends,
// the body each builds, how each treats 200, 202 and errors, the poll (host rewritten to
// the configured one, at the SDK's default interval), and logout without a session header.

// sdkAnswer is what an SDK call ends with: the final status and body.
type sdkAnswer struct {
	status int
	body   []byte
	header http.Header
}

func (a sdkAnswer) json(tb testing.TB) map[string]any {
	tb.Helper()
	var m map[string]any
	mustf(tb, json.Unmarshal(a.body, &m) == nil, "not a JSON object: %d %s", a.status, a.body)
	return m
}

// sdkClient is one SDK's way of calling: its configured host, its extra headers, and how long
// it sleeps between polls.
type sdkClient struct {
	tb       testing.TB
	host     string // host:port the SDK is configured with
	interval time.Duration
	// headers adds the SDK's headers to a call (session is "" for calls without one).
	headers func(h http.Header, session string)
}

func (c *sdkClient) send(method, path string, body any, session string) sdkAnswer {
	c.tb.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		mustf(c.tb, err == nil, "%v", err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+c.host+path, rd)
	mustf(c.tb, err == nil, "%v", err)
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	c.headers(req.Header, session)
	resp, err := http.DefaultClient.Do(req)
	mustf(c.tb, err == nil, "%s %s: %v", method, path, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return sdkAnswer{status: resp.StatusCode, body: b, header: resp.Header}
}

// call sends an API call and, on 202, polls its location as the SDKs do: the location's host
// is replaced with the configured one (split on /zstack/v1/api-jobs), and 202 means "still
// running" until 200 or 503 ends it.
func (c *sdkClient) call(method, path string, body any, session string) sdkAnswer {
	c.tb.Helper()
	a := c.send(method, path, body, session)
	if a.status != http.StatusAccepted {
		return a
	}
	loc, _ := a.json(c.tb)["location"].(string)
	mustf(c.tb, loc != "", "the API answered 202 without a location: %s", a.body)
	if !strings.Contains(loc, c.host) {
		parts := strings.SplitN(loc, "/zstack/v1/api-jobs", 2)
		mustf(c.tb, len(parts) == 2, "the location %s has no /zstack/v1/api-jobs for the SDK to split on", loc)
		loc = "http://" + c.host + "/zstack/v1/api-jobs" + parts[1]
	}
	u, err := url.Parse(loc)
	mustf(c.tb, err == nil, "location %q: %v", loc, err)
	for deadline := time.Now().Add(3 * time.Minute); ; {
		p := c.send("GET", u.Path, nil, session)
		if p.status != http.StatusAccepted {
			return p
		}
		mustf(c.tb, time.Now().Before(deadline), "the job did not end in 3 minutes")
		time.Sleep(c.interval)
	}
}

// javaSDK is ZSClient: X-Job-UUID and X-JSON-Schema on every call and poll, Authorization
// when the action needs a session, 1 s between polls (ZSConfig's default).
func javaSDK(tb testing.TB, host string) *sdkClient {
	return &sdkClient{tb: tb, host: host, interval: time.Second, headers: func(h http.Header, session string) {
		h.Set("X-Job-UUID", zstack.NewUUID())
		h.Set("X-JSON-Schema", "true")
		if session != "" {
			h.Set("Authorization", "OAuth "+session)
		}
	}}
}

// pythonSDK is zssdk.py: X-Job-UUID and Authorization, no schema header, 1 s between polls.
func pythonSDK(tb testing.TB, host string) *sdkClient {
	return &sdkClient{tb: tb, host: host, interval: time.Second, headers: func(h http.Header, session string) {
		h.Set("X-Job-UUID", zstack.NewUUID())
		h.Set("Connection", "close")
		if session != "" {
			h.Set("Authorization", "OAuth "+session)
		}
	}}
}

// goSDK is zstack-sdk-go: Authorization and x-session-id on every call but login, 2 s
// between polls (its retryInterval).
func goSDK(tb testing.TB, host string) *sdkClient {
	return &sdkClient{tb: tb, host: host, interval: 2 * time.Second, headers: func(h http.Header, session string) {
		if session != "" {
			h.Set("Authorization", "OAuth "+session)
			h.Set("x-session-id", session)
		}
	}}
}

// javaResult checks an answer the way ApiResult.getResult reads it: every schema entry names
// a server class that SourceClassMap knows, at a path that exists in the answer.
func javaResult(tb testing.TB, spec sdkSpec, a sdkAnswer) map[string]any {
	tb.Helper()
	mustf(tb, a.status == 200, "want 200, got %d: %s", a.status, a.body)
	m := a.json(tb)
	schema, ok := m["schema"].(map[string]any)
	mustf(tb, ok, "the Java SDK asked for a schema and got none: %s", a.body)
	for path, src := range schema {
		_, known := spec.SourceClassMap[src.(string)]
		mustf(tb, known, "schema %s: %s is not in SourceClassMap: the SDK would leave it an untyped map", path, src)
		mustf(tb, lookupPath(m, path) != nil, "schema entry %s names nothing in the answer", path)
	}
	return m
}

// lookupPath follows a schema path (inventory.vmNics[0]) into a decoded answer.
func lookupPath(v any, path string) any {
	for _, part := range strings.Split(path, ".") {
		name, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 {
			name = part[:i]
			fmt.Sscanf(part[i:], "[%d]", &idx)
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[name]
		if idx >= 0 {
			l, ok := v.([]any)
			if !ok || idx >= len(l) {
				return nil
			}
			v = l[idx]
		}
	}
	return v
}

func TestZStackSDKsDriveARestoreEndToEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	spec := newConformance(t).spec
	port := e.api.Addr[strings.LastIndex(e.api.Addr, ":")+1:]
	login := map[string]any{"logInByAccount": map[string]string{"accountName": "admin", "password": auth.SHA512Hex(adminPassword)}}
	params := func(name string) map[string]any {
		return map[string]any{"name": name, "instanceOfferingUuid": demosite.OfferingSmall, "l3NetworkUuids": []string{demosite.L3ProdUUID}}
	}

	t.Run("Java", func(t *testing.T) {
		// Configured with "localhost": the location's host (the api's 127.0.0.1) is rewritten.
		c := javaSDK(t, "localhost:"+port)
		inv := javaResult(t, spec, c.call("PUT", "/zstack/v1/accounts/login", login, ""))["inventory"].(map[string]any)
		session := str(inv, "uuid")
		// Every field of the action goes under params: the tags and requestIp too.
		p := params("java-vm")
		p["systemTags"], p["userTags"], p["requestIp"] = []string{"hostname::java-vm"}, []string{"from-java"}, "10.1.2.3"
		post := c.send("POST", "/zstack/v1/vm-instances/from/vm-backups/"+demosite.GroupWeb01UUID, map[string]any{"params": p}, session)
		mustf(t, post.status == 202, "call(action, completion) fires only after a 202: got %d %s", post.status, post.body)
		r := c.call("POST", "/zstack/v1/vm-instances/from/vm-backups/"+demosite.GroupApp01UUID, map[string]any{"params": params("java-vm-2")}, session)
		vm := javaResult(t, spec, r)["inventory"].(map[string]any)
		mustf(t, str(vm, "name") == "java-vm-2" && str(vm, "state") == "Running", "%s", r.body)
		schema := javaResult(t, spec, r)["schema"].(map[string]any)
		mustf(t, schema["inventory.vmNics[0]"] == "org.zstack.header.vm.VmNicInventory" &&
			schema["inventory.allVolumes[0]"] == "org.zstack.header.volume.VolumeInventory", "schema %v", schema)
		q := c.call("GET", "/zstack/v1/vm-instances?q=name=java-vm-2&replyWithCount=true", nil, session)
		mustf(t, javaResult(t, spec, q)["total"] == 1.0, "%s", q.body)
		// The first call's job, polled as call(action, completion) would.
		loc := str(post.json(t), "location")
		done := c.send("GET", loc[strings.Index(loc, "/zstack/v1/api-jobs/"):], nil, session)
		for done.status == 202 {
			time.Sleep(c.interval)
			done = c.send("GET", loc[strings.Index(loc, "/zstack/v1/api-jobs/"):], nil, session)
		}
		mustf(t, str(javaResult(t, spec, done)["inventory"].(map[string]any), "name") == "java-vm", "%s", done.body)
		// A failure arrives through the poll with its own code (not sdk.1000).
		f := c.call("POST", "/zstack/v1/vm-instances/from/vm-backups/0123456789abcdef0123456789abcdef", map[string]any{"params": params("ghost")}, session)
		mustf(t, f.status == 503 && str(f.json(t)["error"].(map[string]any), "code") == "SYS.1003", "%d %s", f.status, f.body)
		// LogOut needs no session header.
		out := c.send("DELETE", "/zstack/v1/accounts/sessions/"+session, nil, "")
		mustf(t, out.status == 200, "logout: %d %s", out.status, out.body)
		after := c.send("GET", "/zstack/v1/vm-instances", nil, session)
		mustf(t, after.status == 503 && str(after.json(t)["error"].(map[string]any), "code") == "ID.1001", "after logout: %s", after.body)
	})

	t.Run("Python", func(t *testing.T) {
		c := pythonSDK(t, e.api.Addr)
		l := c.call("PUT", "/zstack/v1/accounts/login", login, "")
		mustf(t, l.status == 200, "%s", l.body)
		session := str(l.json(t)["inventory"].(map[string]any), "uuid")
		// zssdk.py's path-variable regex never matches, so groupUuid stays in params too.
		p := params("py-vm")
		p["groupUuid"], p["systemTags"], p["userTags"] = demosite.GroupDB01UUID, []string{"hostname::py-vm"}, []string{"from-python"}
		p["l3NetworkUuids"] = []string{demosite.L3ProdUUID, demosite.L3MgmtUUID}
		p["defaultL3NetworkUuid"] = demosite.L3ProdUUID
		r := c.call("POST", "/zstack/v1/vm-instances/from/vm-backups/"+demosite.GroupDB01UUID, map[string]any{"params": p}, session)
		mustf(t, r.status == 200 && str(r.json(t)["inventory"].(map[string]any), "name") == "py-vm", "%d %s", r.status, r.body)
		_, hasSchema := r.json(t)["schema"]
		mustf(t, !hasSchema, "no X-JSON-Schema was sent, yet: %s", r.body)
		// Python's booleans in the query string: True.
		q := c.call("GET", "/zstack/v1/vm-instances?q=name=py-vm&count=True", nil, session)
		mustf(t, q.status == 200 && q.json(t)["total"] == 1.0, "count=True: %s", q.body)
		// LogOutAction needs no session; zssdk.py puts its parameters in the query string.
		out := c.send("DELETE", "/zstack/v1/accounts/sessions/"+session+"?sessionUuid="+session, nil, "")
		mustf(t, out.status == 200, "logout: %d %s", out.status, out.body)
	})

	t.Run("Go", func(t *testing.T) {
		c := goSDK(t, e.api.Addr)
		l := c.call("PUT", "/zstack/v1/accounts/login", login, "")
		mustf(t, l.status == 200, "%s", l.body)
		session := str(l.json(t)["inventory"].(map[string]any), "uuid")
		// A parameter struct in the style of the Go SDK's: every field present, integers it
		// cannot leave out as 0, unset strings as "", tags at the top level (BaseParam).
		body := map[string]any{
			"systemTags": []string{"hostname::go-vm"}, "requestIp": "10.9.8.7",
			"params": map[string]any{"name": "go-vm", "instanceOfferingUuid": demosite.OfferingSmall, "cpuNum": 0, "memorySize": 0,
				"reservedMemorySize": 0, "l3NetworkUuids": []string{demosite.L3ProdUUID}, "type": "", "zoneUuid": "", "clusterUuid": "",
				"hostUuid": "", "primaryStorageUuidForRootVolume": nil, "primaryStorageUuidForDataVolume": nil, "description": "",
				"defaultL3NetworkUuid": "", "resourceUuid": "", "tagUuids": nil, "strategy": "", "rootVolumeSystemTags": nil,
				"dataVolumeSystemTags": nil, "backupStorageUuid": "", "vmNicParams": ""},
		}
		post := c.send("POST", "/zstack/v1/vm-instances/from/vm-backups/"+demosite.GroupWeb01UUID, body, session)
		mustf(t, post.status == 202 && str(post.json(t), "location") != "", "PostWithAsync needs a location: %d %s", post.status, post.body)
		r := c.call("POST", "/zstack/v1/vm-instances/from/vm-backups/"+demosite.GroupApp01UUID,
			map[string]any{"params": map[string]any{"name": "go-vm-2", "cpuNum": 1, "memorySize": 1 << 30, "reservedMemorySize": 0,
				"l3NetworkUuids": []string{demosite.L3ProdUUID}, "strategy": ""}}, session)
		mustf(t, r.status == 200 && str(r.json(t)["inventory"].(map[string]any), "name") == "go-vm-2", "%d %s", r.status, r.body)
		// ValidateSession unmarshals the whole answer into map[string]bool.
		v := c.call("GET", "/zstack/v1/accounts/sessions/"+session+"/valid", nil, session)
		var valid map[string]bool
		mustf(t, v.status == 200 && json.Unmarshal(v.body, &valid) == nil && valid["valid"], "ValidateSession: %d %s", v.status, v.body)
		// Terraform's data sources: images and free IPs.
		imgs := c.call("GET", "/zstack/v1/images", nil, session)
		mustf(t, imgs.status == 200, "%s", imgs.body)
		list := imgs.json(t)["inventories"].([]any)
		mustf(t, len(list) > 0, "images: %s", imgs.body)
		one := c.call("GET", "/zstack/v1/images/"+str(list[0].(map[string]any), "uuid"), nil, session)
		mustf(t, one.status == 200 && len(one.json(t)["inventories"].([]any)) == 1, "image by uuid: %s", one.body)
		free := c.call("GET", "/zstack/v1/l3-networks/"+demosite.L3ProdUUID+"/ip/free?limit=3", nil, session)
		mustf(t, free.status == 200 && len(free.json(t)["inventories"].([]any)) == 3, "free IPs: %s", free.body)
		// Logout (its Delete appends deleteMode=).
		out := c.send("DELETE", "/zstack/v1/accounts/sessions/"+session+"?deleteMode=", nil, session)
		mustf(t, out.status == 200, "logout: %d %s", out.status, out.body)
		v = c.send("GET", "/zstack/v1/accounts/sessions/"+session+"/valid", nil, "")
		mustf(t, v.status == 200 && json.Unmarshal(v.body, &valid) == nil && !valid["valid"], "after logout: %s", v.body)
		// The first call's job, waited for as httpWait does.
		loc := str(post.json(t), "location")
		done := c.send("GET", loc[strings.Index(loc, "/zstack/v1/api-jobs/"):], nil, e.session)
		for done.status == 202 {
			time.Sleep(c.interval)
			done = c.send("GET", loc[strings.Index(loc, "/zstack/v1/api-jobs/"):], nil, e.session)
		}
		mustf(t, done.status == 200 && str(done.json(t)["inventory"].(map[string]any), "name") == "go-vm", "%d %s", done.status, done.body)
	})
	e.checkInvariants()
}
