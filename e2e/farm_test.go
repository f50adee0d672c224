package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/paddock/paddock/client"
)

// TestFarm drives `paddock farm` (issue 13) as its users do: three hosts
// join /services/db from DJB directories and a JSON file, three exporters
// keep PHP (read by real php), JSON and YAML files in sync, and operators
// read and change hosts from elsewhere. The subtests share one cluster and
// run in order, each starting from the state the previous one left; the
// node the exporters talk to is killed last.
func TestFarm(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	w := &farmWorld{top: t, c: c, leaders: watchLeaders(t, c), php: findPHP(t), dir: t.TempDir()}
	// The exporters talk first to a follower that the joiners and the
	// writers never use, so that killing it tests the exporters alone.
	l := c.leader()
	f := (l + 1) % len(c.agents)
	var others []int
	for i := range c.agents {
		if i != f {
			others = append(others, i)
		}
	}
	w.eps = c.endpoints(others...)
	w.exportEps = c.endpoints(append([]int{f}, others...)...)
	cl, err := client.New(context.Background(), client.Config{Endpoints: strings.Split(w.eps, ",")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	w.cl = cl

	db := &dbFarm{farmWorld: w}
	for _, st := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"join and export", db.joinAndExport},
		{"php", db.phpFile},
		{"local change", db.localChange},
		{"farm set reaches the joiner", db.setReachesJoiner},
		{"get", db.get},
		{"set and unset dotted", db.setUnsetDotted},
		{"ls", db.ls},
		{"export --once", db.exportOnce},
		{"join --common", db.common},
		{"export --wait", db.exportWait},
		{"kill -9 joiner", db.killJoiner},
		{"session expiry", db.sessionExpiry},
		{"HTTP", db.http},
	} {
		if !t.Run(st.name, st.fn) {
			return // the next ones start from the state this one left
		}
	}
	t.Run("check", w.check)
	t.Run("endpoints", w.endpointFlags)
	t.Run("non-Paddock endpoint", w.notPaddock)
	t.Run("import", w.importOneWay)
	t.Run("kill -9 the exporters' node", func(t *testing.T) { db.killExportersNode(t, f) })
}

// dbFarm is /services/db: its joiners, their local configurations and the
// counters of their --changed-cmd.
type dbFarm struct {
	*farmWorld
	joiners map[string]*farmProc // by host name
	confs   map[string]string    // host name to its CONF path
	counts  map[string]string    // host name to its --changed-cmd counter
}

const dbFarmPath = "/services/db"

// joinAndExport: three hosts join, the farm gets its size, and every
// export holds the farm as ZkFarmer's README shows it.
func (d *dbFarm) joinAndExport(t *testing.T) {
	dir := d.dir
	d.joiners, d.confs, d.counts = map[string]*farmProc{}, map[string]string{}, map[string]string{}
	d.confs["10.0.0.1"] = filepath.Join(dir, "db1")
	writeTree(t, d.confs["10.0.0.1"], map[string]string{
		"hostname": "db-01.example.com\n", "enabled": "0\n", "mysql/replication_delay": "0\n",
		".hidden": "dotfiles are ignored\n",
	})
	d.confs["10.0.0.2"] = filepath.Join(dir, "db2.json")
	writeTree(t, dir, map[string]string{
		"db2.json": `{"hostname": "db-02.example.com", "enabled": "0", "mysql": {"replication_delay": "1"}}`,
	})
	// No hostname in the third: --hostname gives one.
	d.confs["10.0.0.3"] = filepath.Join(dir, "db3")
	writeTree(t, d.confs["10.0.0.3"], map[string]string{"enabled": "0\n", "mysql/replication_delay": "2\n"})
	extra := map[string][]string{"10.0.0.3": {"--hostname", "db-03.example.com"}}
	for _, name := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"} {
		d.counts[name] = filepath.Join(dir, name+".count")
		args := append([]string{"--changed-cmd", "echo changed >> " + shellQuote(d.counts[name])}, extra[name]...)
		d.joiners[name] = d.join(t, dbFarmPath, d.confs[name], name, args...)
	}
	d.want = hosts{
		"10.0.0.1": map[string]any{"hostname": "db-01.example.com", "enabled": "0", "mysql": map[string]any{"replication_delay": "0"}},
		"10.0.0.2": map[string]any{"hostname": "db-02.example.com", "enabled": "0", "mysql": map[string]any{"replication_delay": "1"}},
		"10.0.0.3": map[string]any{"hostname": "db-03.example.com", "enabled": "0", "mysql": map[string]any{"replication_delay": "2"}},
	}
	for name, conf := range d.want {
		data, _, _ := d.znode(t, dbFarmPath+"/"+name)
		var got map[string]any
		if err := json.Unmarshal([]byte(data), &got); err != nil || !reflect.DeepEqual(got, conf) {
			t.Errorf("znode %s/%s = %q, want the JSON of %v", dbFarmPath, name, data, conf)
		}
	}
	// --hostname went to the znode and to CONF, which had none.
	d.fileIs(t, "farm join --hostname: db3/hostname", filepath.Join(d.confs["10.0.0.3"], "hostname"), "db-03.example.com", time.Now(), time.Second)
	// Each join raised the farm's size to the hosts it saw.
	ok, last := poll(5*time.Second, func() (bool, string) {
		r := d.farmCLI(t, "get", dbFarmPath, "size")
		return r.code == 0 && r.stdout == "3\n", r.String()
	})
	if !ok {
		t.Errorf("farm get %s size after three joins: %s, want 3", dbFarmPath, last)
	}

	start := time.Now()
	for _, format := range []string{"php", "json", "yaml"} {
		d.exporters = append(d.exporters, startExporter(t, d.top, dir, d.exportEps, dbFarmPath, format))
	}
	d.exports(t, "first export", start, farmProcStart)
	d.changedOnce(t, "first export", false)
}

// phpFile: the PHP export is what ZkFarmer's README shows, and `php -l` clean.
func (d *dbFarm) phpFile(t *testing.T) {
	if d.php == "" {
		t.Skip(phpMissing)
	}
	e := d.exporters[0]
	b, err := os.ReadFile(e.dest)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^<\?php\s+return array\s*\(`).Match(b) {
		t.Errorf("%s does not start with `<?php return array(`:\n%s", e.dest, b)
	}
	if out, err := exec.Command(d.php, "-l", e.dest).CombinedOutput(); err != nil || !strings.Contains(string(out), "No syntax errors") {
		t.Errorf("php -l %s: %v: %s", e.dest, err, out)
	}
	// var_export of what require returns, as a PHP user sees it.
	out, err := exec.Command(d.php, "-r", `var_export(require $argv[1]);`, e.dest).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `'10.0.0.1' => `) || !strings.Contains(string(out), `'replication_delay' => '0'`) {
		t.Errorf("php var_export(require %s): %v:\n%s", e.dest, err, out)
	}
}

// localChange: `echo 1 > DIR/enabled` on a joiner, or a JSON CONF
// rewritten in place, reaches every export within a second, in one
// change: no export sees the file between its truncation and its write.
func (d *dbFarm) localChange(t *testing.T) {
	event := time.Now()
	writeTree(t, d.confs["10.0.0.3"], map[string]string{"enabled": "1\n"}) // as echo: truncate, write
	d.want["10.0.0.3"].(map[string]any)["enabled"] = "1"
	d.exports(t, "echo 1 > db3/enabled", event, time.Second)
	d.changedOnce(t, "echo 1 > db3/enabled", false)

	event = time.Now()
	writeTree(t, d.dir, map[string]string{
		"db2.json": `{"hostname": "db-02.example.com", "enabled": "0", "mysql": {"replication_delay": "1"}, "weight": "5"}`,
	})
	d.want["10.0.0.2"].(map[string]any)["weight"] = "5"
	d.exports(t, "db2.json rewritten", event, time.Second)
	d.changedOnce(t, "db2.json rewritten", false)

	// A joiner's own change is not a remote change: no --changed-cmd,
	// no write back (no echo loop).
	for _, host := range []string{"10.0.0.2", "10.0.0.3"} {
		if n := countLines(d.counts[host]); n != 0 {
			t.Errorf("joiner %s's --changed-cmd ran %d times after its own local change, want 0", host, n)
		}
	}
}

// setReachesJoiner: `paddock farm set` from elsewhere rewrites the
// joiner's DJB file (or JSON file), runs its --changed-cmd once, and
// reaches every export.
func (d *dbFarm) setReachesJoiner(t *testing.T) {
	event := time.Now()
	d.farmOK(t, "set", dbFarmPath+"/10.0.0.1", "enabled", "1")
	d.fileIs(t, "farm set 10.0.0.1 enabled 1: db1/enabled", filepath.Join(d.confs["10.0.0.1"], "enabled"), "1", event, time.Second)
	d.want["10.0.0.1"].(map[string]any)["enabled"] = "1"
	d.exports(t, "farm set 10.0.0.1 enabled 1", event, time.Second)
	d.joinerChanged(t, "10.0.0.1", 1)
	d.changedOnce(t, "farm set 10.0.0.1 enabled 1", false)

	event = time.Now()
	d.farmOK(t, "set", dbFarmPath+"/10.0.0.2", "mysql.replication_delay", "7")
	h2 := d.want["10.0.0.2"].(map[string]any)
	h2["mysql"].(map[string]any)["replication_delay"] = "7"
	d.jsonFileIs(t, "farm set 10.0.0.2 mysql.replication_delay 7: db2.json", d.confs["10.0.0.2"], h2, event, time.Second)
	d.exports(t, "farm set 10.0.0.2 mysql.replication_delay 7", event, time.Second)
	d.joinerChanged(t, "10.0.0.2", 1)
	d.changedOnce(t, "farm set 10.0.0.2 mysql.replication_delay 7", false)
	// A DJB joiner gets a new sub-dict as a directory.
	event = time.Now()
	d.farmOK(t, "set", dbFarmPath+"/10.0.0.1", "mysql.lag.max", "30")
	d.fileIs(t, "farm set 10.0.0.1 mysql.lag.max 30: db1/mysql/lag/max", filepath.Join(d.confs["10.0.0.1"], "mysql", "lag", "max"), "30", event, time.Second)
	d.want["10.0.0.1"].(map[string]any)["mysql"].(map[string]any)["lag"] = map[string]any{"max": "30"}
	d.exports(t, "farm set 10.0.0.1 mysql.lag.max 30", event, time.Second)
	d.joinerChanged(t, "10.0.0.1", 2)
	d.changedOnce(t, "farm set 10.0.0.1 mysql.lag.max 30", false)
}

// joinerChanged checks that host's --changed-cmd has run want times.
func (d *dbFarm) joinerChanged(t *testing.T, host string, want int) {
	t.Helper()
	ok, _ := poll(5*time.Second, func() (bool, string) { return countLines(d.counts[host]) >= want, "" })
	if n := countLines(d.counts[host]); !ok || n != want {
		t.Errorf("joiner %s's --changed-cmd ran %d times, want %d", host, n, want)
	}
}

// get: a whole host in YAML (the default), JSON and PHP; one field,
// dotted or not; a missing host.
func (d *dbFarm) get(t *testing.T) {
	node := dbFarmPath + "/10.0.0.1"
	want := d.want["10.0.0.1"]
	for _, tc := range []struct {
		args  []string
		parse func([]byte) (any, error)
	}{
		{[]string{"get", node}, parseYAML},
		{[]string{"get", node, "-f", "yaml"}, parseYAML},
		{[]string{"get", node, "-f", "json"}, parseJSON},
		{[]string{"get", node, "-f", "php"}, d.phpValue},
	} {
		out := d.farmOK(t, tc.args...)
		got, err := tc.parse([]byte(out))
		if err != nil {
			t.Errorf("farm %s: %v in %q", strings.Join(tc.args, " "), err, out)
			continue
		}
		if got != nil && !reflect.DeepEqual(got, want) {
			t.Errorf("farm %s (-got +want):\n%s", strings.Join(tc.args, " "), cmp.Diff(got, want))
		}
	}
	for field, value := range map[string]string{"enabled": "1", "hostname": "db-01.example.com", "mysql.replication_delay": "0"} {
		if got := d.farmOK(t, "get", node, field); got != value+"\n" {
			t.Errorf("farm get %s %s = %q, want %q", node, field, got, value+"\n")
		}
	}
	r := d.farmCLI(t, "get", dbFarmPath+"/10.9.9.9")
	if r.code == 0 || !strings.Contains(r.stderr, dbFarmPath+"/10.9.9.9") {
		t.Errorf("farm get of a missing host: %v, want a failure naming it", r)
	}
}

// phpValue is what PHP code b returns (json_encode of it), nil when php is
// missing.
func (d *dbFarm) phpValue(b []byte) (any, error) {
	if d.php == "" {
		return nil, nil
	}
	f := filepath.Join(d.dir, "get.php")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		return nil, err
	}
	out, err := exec.Command(d.php, "-r", `echo json_encode(require $argv[1]);`, f).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("php: %v: %s", err, out)
	}
	return parseJSON(out)
}

// setUnsetDotted: dotted set creates sub-dicts, dotted unset removes
// them, the JSON joiner's file follows, and concurrent sets of different
// fields are all kept.
func (d *dbFarm) setUnsetDotted(t *testing.T) {
	node := dbFarmPath + "/10.0.0.2"
	h2 := d.want["10.0.0.2"].(map[string]any)
	getJSON := func() map[string]any {
		t.Helper()
		var v map[string]any
		out := d.farmOK(t, "get", node, "-f", "json")
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("farm get %s -f json: %v in %q", node, err, out)
		}
		return v
	}
	d.farmOK(t, "set", node, "mysql.lag.max", "3")
	h2["mysql"].(map[string]any)["lag"] = map[string]any{"max": "3"}
	if got := getJSON(); !reflect.DeepEqual(got, h2) {
		t.Errorf("after farm set %s mysql.lag.max 3 (-got +want):\n%s", node, cmp.Diff(got, h2))
	}
	d.farmOK(t, "unset", node, "mysql.lag.max")
	h2["mysql"].(map[string]any)["lag"] = map[string]any{}
	if got := getJSON(); !reflect.DeepEqual(got, h2) {
		t.Errorf("after farm unset %s mysql.lag.max (-got +want):\n%s", node, cmp.Diff(got, h2))
	}
	event := time.Now()
	d.farmOK(t, "unset", node, "mysql.lag")
	delete(h2["mysql"].(map[string]any), "lag")
	d.jsonFileIs(t, "farm unset 10.0.0.2 mysql.lag: db2.json", d.confs["10.0.0.2"], h2, event, time.Second)
	d.exports(t, "farm set and unset 10.0.0.2 mysql.lag", event, time.Second)
	d.changedOnce(t, "farm set and unset 10.0.0.2 mysql.lag", true)

	// Compare-and-set: concurrent sets of different fields of one znode
	// all land.
	const n = 6
	tree(t, d.eps, "create", "/services/cas")
	tree(t, d.eps, "create", "/services/cas/h", `{"seed": "0"}`)
	var wg sync.WaitGroup
	results := make([]result, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = d.farmCLI(t, "set", "/services/cas/h", fmt.Sprintf("f%d", i), fmt.Sprint(i))
		}()
	}
	wg.Wait()
	want := map[string]any{"seed": "0"}
	for i, r := range results {
		if r.code != 0 {
			t.Errorf("concurrent farm set /services/cas/h f%d: %v", i, r)
		}
		want[fmt.Sprintf("f%d", i)] = fmt.Sprint(i)
	}
	var got map[string]any
	out := d.farmOK(t, "get", "/services/cas/h", "-f", "json")
	if err := json.Unmarshal([]byte(out), &got); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("after %d concurrent sets of different fields, farm get /services/cas/h -f json = %s, want %v", n, out, want)
	}
}

// ls: children, and fields as ZkFarmer prints them (names padded to 20
// columns), with filters.
func (d *dbFarm) ls(t *testing.T) {
	check := func(args []string, want ...string) {
		t.Helper()
		if got := d.lsLines(t, args...); !reflect.DeepEqual(got, want) {
			t.Errorf("farm %s:\n got %q\nwant %q", strings.Join(args, " "), got, want)
		}
	}
	check([]string{"ls", dbFarmPath}, "10.0.0.1", "10.0.0.2", "10.0.0.3")
	check([]string{"ls", dbFarmPath, "--fields", "hostname,enabled,mysql.replication_delay"},
		fmt.Sprintf("%-20s %s", "10.0.0.1", "hostname=db-01.example.com, enabled=1, mysql.replication_delay=0"),
		fmt.Sprintf("%-20s %s", "10.0.0.2", "hostname=db-02.example.com, enabled=0, mysql.replication_delay=7"),
		fmt.Sprintf("%-20s %s", "10.0.0.3", "hostname=db-03.example.com, enabled=1, mysql.replication_delay=2"))
	check([]string{"ls", dbFarmPath, "--fields", "hostname", "-F", "enabled=1,mysql.replication_delay<2"},
		fmt.Sprintf("%-20s %s", "10.0.0.1", "hostname=db-01.example.com"))
	check([]string{"ls", dbFarmPath, "-F", "!nope,enabled!=1"}, "10.0.0.2")
}

// exportOnce: `export --once` writes the farm (filtered, or as a DJB
// directory) and exits; a farm that does not exist is empty.
func (d *dbFarm) exportOnce(t *testing.T) {
	enabled := hosts{}
	for name, h := range d.want {
		if h.(map[string]any)["enabled"] == "1" {
			enabled[name] = h
		}
	}
	for _, tc := range []struct {
		farm, dest string
		args       []string
		want       hosts
	}{
		{dbFarmPath, "once.json", []string{"-F", "enabled=1"}, enabled},
		{dbFarmPath, "once.yaml", nil, d.want},
		{dbFarmPath, "once-dir", []string{"-f", "dir"}, d.want},
		{"/services/nowhere", "nowhere.json", nil, hosts{}},
	} {
		dest := filepath.Join(d.dir, tc.dest)
		args := append([]string{"export", tc.farm, dest, "--once"}, tc.args...)
		d.farmOK(t, args...)
		var got hosts
		var err error
		switch filepath.Ext(dest) {
		case ".json", ".yaml":
			e := &exporter{format: filepath.Ext(dest)[1:], dest: dest}
			got, err = e.read("")
		default:
			got, err = readDJB(dest)
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("farm %s: %v (-got +want):\n%s", strings.Join(args, " "), err, cmp.Diff(got, tc.want))
		}
	}
}

// common: `join --common` keeps a persistent FARM/common, which is no
// host: the exports leave it out (and so do not change), size stays.
func (d *dbFarm) common(t *testing.T) {
	conf := filepath.Join(d.dir, "common.json")
	writeTree(t, d.dir, map[string]string{"common.json": `{"max_connections": "100"}`})
	startFarmProc(t, d.top, "join --common", "join", dbFarmPath, conf, "-c", "--endpoints", d.eps)
	ok, last := poll(farmProcStart, func() (bool, string) {
		data, eph, ok := d.znode(t, dbFarmPath+"/common")
		return ok && !eph && data == `{"max_connections":"100"}`, fmt.Sprintf("exists %t, ephemeral %t, data %q", ok, eph, data)
	})
	if !ok {
		t.Fatalf("farm join %s %s -c: %s, want a persistent %s/common holding the configuration", dbFarmPath, conf, last, dbFarmPath)
	}
	// The exporters' next run is for the next change.
	event := time.Now()
	d.farmOK(t, "set", dbFarmPath+"/10.0.0.3", "weight", "10")
	d.want["10.0.0.3"].(map[string]any)["weight"] = "10"
	d.exports(t, "farm set 10.0.0.3 weight 10 after join --common", event, time.Second)
	d.changedOnce(t, "join --common, then farm set 10.0.0.3 weight 10", false)
	if got := d.farmOK(t, "get", dbFarmPath, "size"); got != "3\n" {
		t.Errorf("farm get %s size after join --common = %q, want 3", dbFarmPath, got)
	}
}

// exportWait: with --wait MIN:MAX a burst of changes is one write and
// one --changed-cmd run.
func (d *dbFarm) exportWait(t *testing.T) {
	dir := filepath.Join(d.dir, "wait")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	e := startExporter(t, t, dir, d.exportEps, dbFarmPath, "json", "--wait", "1s:10s")
	holds := func() (bool, string) {
		got, err := e.read("")
		return err == nil && reflect.DeepEqual(got, d.want), fmt.Sprintf("%v (-got +want):\n%s", err, cmp.Diff(got, d.want))
	}
	d.leaders.within(t, "export --wait 1s:10s: first write", start, farmProcStart, holds)
	ranTimes := func(want int) {
		t.Helper()
		poll(5*time.Second, func() (bool, string) { return countLines(e.counter) >= want, "" })
		if n := countLines(e.counter); n != want {
			t.Errorf("export --wait 1s:10s: --changed-cmd ran %d times, want %d", n, want)
		}
	}
	ranTimes(1)

	// Five sets at once, of different fields: one quiet second later, one
	// write.
	var wg sync.WaitGroup
	h3 := d.want["10.0.0.3"].(map[string]any)
	for i := range 5 {
		field := fmt.Sprintf("burst%d", i)
		h3[field] = "1"
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := d.farmCLI(t, "set", dbFarmPath+"/10.0.0.3", field, "1"); r.code != 0 {
				t.Errorf("farm set %s/10.0.0.3 %s 1: %v", dbFarmPath, field, r)
			}
		}()
	}
	wg.Wait()
	burst := time.Now()
	d.leaders.within(t, "export --wait 1s:10s: a burst of 5 sets", burst, time.Second, holds)
	ranTimes(2)
	d.exports(t, "a burst of 5 sets", burst, time.Second)
	d.changedOnce(t, "a burst of 5 sets", true)
}

// sessionExpiry: a joiner stopped (SIGSTOP) past its session timeout
// loses its host; resumed, it registers again with its CONF, changed
// meanwhile.
func (d *dbFarm) sessionExpiry(t *testing.T) {
	j := d.joiners["10.0.0.1"]
	if err := j.p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	h1 := d.want["10.0.0.1"].(map[string]any)
	delete(d.want, "10.0.0.1")
	d.exports(t, "SIGSTOP of joiner 10.0.0.1 (its session expires)", stopped, farmSessionTimeout+time.Second)
	d.changedOnce(t, "SIGSTOP of joiner 10.0.0.1 (its session expires)", false)

	writeTree(t, d.confs["10.0.0.1"], map[string]string{"mysql/replication_delay": "9\n"})
	h1["mysql"].(map[string]any)["replication_delay"] = "9"
	d.want["10.0.0.1"] = h1
	if err := j.p.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// It learns of the expiry at its next keepalive, then registers.
	d.exports(t, "SIGCONT of joiner 10.0.0.1 (registers again, with CONF)", time.Now(), farmSessionTimeout)
	d.changedOnce(t, "SIGCONT of joiner 10.0.0.1 (registers again, with CONF)", false)
	if _, eph, ok := d.znode(t, dbFarmPath+"/10.0.0.1"); !ok || !eph {
		t.Errorf("%s/10.0.0.1 after registering again: exists %t, ephemeral %t, want an ephemeral", dbFarmPath, ok, eph)
	}
	// Registering with CONF's content is no remote change.
	d.joinerChanged(t, "10.0.0.1", 2)
}

// killJoiner: a kill -9ed host leaves every export within its session
// timeout, each --changed-cmd runs once for it, and size stays.
func (d *dbFarm) killJoiner(t *testing.T) {
	d.joiners["10.0.0.2"].kill9()
	event := time.Now()
	delete(d.want, "10.0.0.2")
	d.exports(t, "kill -9 joiner 10.0.0.2", event, farmSessionTimeout+time.Second)
	d.changedOnce(t, "kill -9 joiner 10.0.0.2", false)
	if got := d.farmOK(t, "get", dbFarmPath, "size"); got != "3\n" {
		t.Errorf("farm get %s size after a host left = %q, want 3 (the most hosts seen)", dbFarmPath, got)
	}
}

// http: GET /v1/farms/FARM (for consumers that run no exporter) holds
// what the exports hold, common apart, and the farm's size and running
// count.
func (d *dbFarm) http(t *testing.T) {
	if curlBin == "" {
		t.Fatal("curl not found on PATH")
	}
	url := "http://" + d.c.agents[d.c.leader()].httpAddr + "/v1/farms" + dbFarmPath
	r := run(t, nil, curlBin, "-sS", "--fail-with-body", url)
	var resp struct {
		Farm struct {
			Hosts   map[string]any `json:"hosts"`
			Common  map[string]any `json:"common"`
			Size    int            `json:"size"`
			Running int            `json:"running"`
		} `json:"farm"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &resp); r.code != 0 || err != nil {
		t.Fatalf("curl %s: %v (%v)", url, r, err)
	}
	if !reflect.DeepEqual(resp.Farm.Hosts, d.want) {
		t.Errorf("GET %s: hosts (-got +want):\n%s", url, cmp.Diff(resp.Farm.Hosts, d.want))
	}
	if want := map[string]any{"max_connections": "100"}; !reflect.DeepEqual(resp.Farm.Common, want) {
		t.Errorf("GET %s: common = %v, want %v (join --common's)", url, resp.Farm.Common, want)
	}
	if resp.Farm.Size != 3 || resp.Farm.Running != len(d.want) {
		t.Errorf("GET %s: size %d, running %d; want 3 and %d", url, resp.Farm.Size, resp.Farm.Running, len(d.want))
	}
}

// killExportersNode: kill -9 the node the exporters talk to; they keep
// their last file, then catch every later change.
func (d *dbFarm) killExportersNode(t *testing.T, f int) {
	// The JSON export is sampled throughout: it must always be one of
	// the farm's states, in order, never missing, empty or partial.
	states := []hosts{cloneHosts(d.want)}
	var mu sync.Mutex
	var bad []string
	stop := make(chan struct{})
	sampled := make(chan struct{})
	je := d.exporters[1]
	go func() {
		defer close(sampled)
		at := 0
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			got, err := je.read("")
			mu.Lock()
			i := at
			for ; i < len(states) && (err != nil || !reflect.DeepEqual(got, states[i])); i++ {
			}
			if i == len(states) {
				bad = append(bad, fmt.Sprintf("%v %v", got, err))
			} else {
				at = i
			}
			mu.Unlock()
		}
	}()
	next := func(h hosts) {
		mu.Lock()
		defer mu.Unlock()
		states = append(states, cloneHosts(h))
	}

	for _, e := range d.exporters {
		ok, last := poll(5*time.Second, func() (bool, string) { return connectedTo(e.p.Pid(), d.c.agents[f].grpcAddr) })
		if !ok {
			t.Errorf("export %s is not connected to its first endpoint %s (%s): %s", e.format, d.c.agents[f].grpcAddr, d.c.agents[f].id, last)
		}
	}
	d.c.kill9(f)
	t.Logf("killed %s, the exporters' first endpoint; %s", d.c.agents[f].id, d.leaders)
	d.exports(t, "right after kill -9 of the exporters' node", time.Now(), 0)

	event := time.Now()
	d.want["10.0.0.1"].(map[string]any)["enabled"] = "0"
	next(d.want)
	d.farmOK(t, "set", dbFarmPath+"/10.0.0.1", "enabled", "0")
	d.confs["10.0.0.4"] = filepath.Join(d.dir, "db4.json")
	writeTree(t, d.dir, map[string]string{"db4.json": `{"hostname": "db-04.example.com", "enabled": "1"}`})
	d.want["10.0.0.4"] = map[string]any{"hostname": "db-04.example.com", "enabled": "1"}
	next(d.want)
	d.joiners["10.0.0.4"] = d.join(t, dbFarmPath, d.confs["10.0.0.4"], "10.0.0.4")
	delete(d.want, "10.0.0.3")
	next(d.want)
	d.joiners["10.0.0.3"].kill9()
	d.exports(t, "changes after kill -9 of the exporters' node", event, farmSessionTimeout+time.Second)
	d.changedOnce(t, "changes after kill -9 of the exporters' node", true)
	close(stop)
	<-sampled
	if len(bad) > 0 {
		t.Errorf("the JSON export held %d times something else than the farm's states in order, first: %s", len(bad), bad[0])
	}
}
