package catalog_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmrestore/vmrestore/internal/catalog"
)

// In a site file, a relative storage url is taken relative to the file's folder (through a
// relative path to the file too); one that climbs out with ".." is refused, and Parse, which
// has no file, still wants absolute urls.
func TestRelativeStorageURLsInASiteFile(t *testing.T) {
	data, err := os.ReadFile("../../deploy/site.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	site := filepath.Join(dir, "drill", "site.yaml")
	os.MkdirAll(filepath.Dir(site), 0o750)
	if err := os.WriteFile(site, data, 0o640); err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	defer os.Chdir(wd)
	os.Chdir(dir)
	s, err := catalog.LoadFile("drill/site.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"bs-main": filepath.Join(dir, "drill", "backup"), "ps-nfs": filepath.Join(dir, "drill", "primary", "nfs"),
		"ps-local": filepath.Join(dir, "drill", "primary", "local")}
	got := map[string]string{}
	for _, b := range s.BackupStorages {
		got[b.Name] = b.URL
	}
	for _, p := range s.PrimaryStorages {
		got[p.Name] = p.URL
	}
	for name, url := range want {
		if got[name] != url {
			t.Errorf("%s: url %q, want %q", name, got[name], url)
		}
	}

	climbing := strings.Replace(string(data), "url: backup", "url: ../elsewhere/backup", 1)
	os.WriteFile(site, []byte(climbing), 0o640)
	if _, err := catalog.LoadFile(site); err == nil || !strings.Contains(err.Error(), `url "../elsewhere/backup" must be an absolute directory path`) {
		t.Fatalf("a url climbing out of the folder: %v", err)
	}
	if _, err := catalog.Parse(data); err == nil || !strings.Contains(err.Error(), `url "backup" must be an absolute`) {
		t.Fatalf("Parse of relative urls: %v", err)
	}
}
