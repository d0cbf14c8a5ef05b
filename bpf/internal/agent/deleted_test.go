package agent

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// TestDeletedSuffixIsTheKernelsOnly: /proc/N/exe ends in " (deleted)" for an executable unlinked while it runs, and
// the scan takes the suffix off to match the path the process was started from. A file whose name really ends in
// " (deleted)" was taken for the target's deleted file: "/dir/svc (deleted)" matched the path target /dir/svc, was
// probed and exported as exe="/dir/svc". The suffix is the kernel's only when the path with it names another file,
// or none.
func TestDeletedSuffixIsTheKernelsOnly(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "svc")
	start := func(path string) int {
		t.Helper()
		copyFile(t, "/bin/sleep", path)
		cmd := exec.Command(path, "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd.Process.Pid
	}
	impostor := start(target + " (deleted)")
	deleted := start(target)
	if err := os.Remove(target); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() (bool, string) { // exec has replaced the child's image with sleep's
		l1, _ := os.Readlink("/proc/" + strconv.Itoa(deleted) + "/exe")
		l2, _ := os.Readlink("/proc/" + strconv.Itoa(impostor) + "/exe")
		return l1 == target+" (deleted)" && l2 == target+" (deleted)", "exe links: " + l1 + ", " + l2
	})
	found := map[int]string{}
	for _, p := range scanProcs([]string{target}, nil, os.Getpid(), nil) {
		found[p.pid] = p.exe
	}
	if exe, ok := found[impostor]; ok {
		t.Errorf("%q (pid %d), a file so named, found as target %s with exe %q", target+" (deleted)", impostor, target, exe)
	}
	if exe := found[deleted]; exe != target {
		t.Errorf("the target's own process (pid %d), its file deleted: exe %q, want %q", deleted, exe, target)
	}
}

// A file named with the suffix in the process's own mount namespace (a container's root): the path is not there in
// the agent's, where a stat of it failed and the suffix was taken off, so the impostor was found as the path target
// all the same (found by review). The path is looked up through the process's root (/proc/N/root) as well.
func TestDeletedSuffixInOtherMountNamespace(t *testing.T) {
	requireRoot(t)
	mnt := t.TempDir()
	target := filepath.Join(mnt, "svc")
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
		`mount -t tmpfs none "$1" && cp /bin/sleep "$1/svc (deleted)" && exec "$1/svc (deleted)" 60`, "sh", mnt)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pid := cmd.Process.Pid
	eventually(t, func() (bool, string) { // sh has exec'd the file
		l, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
		return l == target+" (deleted)", "exe link: " + l
	})
	if _, err := os.Stat(target + " (deleted)"); err == nil {
		t.Fatal("the file is visible in the agent's mount namespace")
	}
	for _, p := range scanProcs([]string{target}, nil, os.Getpid(), nil) {
		if p.pid == pid {
			t.Errorf("%q in its own mount namespace (pid %d) found as target %s with exe %q", target+" (deleted)", pid, target, p.exe)
		}
	}
}
