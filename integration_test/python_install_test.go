package integration_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPythonClientInstalls: clients/python installs into a fresh venv
// with no package index (pip --no-build-isolation --no-index, Debian's
// python3-venv, python3-setuptools and python3-wheel, as .ci/run
// installs them), and the installed package, not the source tree, passes
// the unit tests and carries its py.typed marker.
func TestPythonClientInstalls(t *testing.T) {
	skipIfShort(t) // -short keeps TestClientsAndGoReplicaShareLimits
	needPython(t)
	const sysPy = "/usr/bin/python3" // Debian's, with venv, setuptools and wheel
	if _, err := os.Stat(sysPy); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set but %s is missing (.ci/run installs python3-venv)", sysPy)
		}
		t.Skip(sysPy + " is missing")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	tmp := t.TempDir()
	run := func(dir string, env []string, name string, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), append([]string{"PIP_NO_INPUT=1", "PIP_DISABLE_PIP_VERSION_CHECK=1", "PYTHONDONTWRITEBYTECODE=1"}, env...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// Build from a copy: pip leaves build/ and *.egg-info next to the sources.
	src := filepath.Join(tmp, "src")
	run("", nil, "cp", "-r", pyClientDir, src)
	venv := filepath.Join(tmp, "venv")
	run("", nil, sysPy, "-m", "venv", "--system-site-packages", venv)
	vpy := filepath.Join(venv, "bin", "python")
	run("", nil, vpy, "-m", "pip", "install", "--no-build-isolation", "--no-index", src)

	// The tests, without the package next to them: they import the installed one.
	tests := filepath.Join(tmp, "tests")
	if err := os.Mkdir(tests, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"test_floodgate.py", "test_transport.py", "harness.py"} {
		run("", nil, "cp", filepath.Join(pyClientDir, f), tests)
	}
	where := run(tests, []string{"PYTHONPATH="}, vpy, "-c",
		"import floodgate, os; d = os.path.dirname(floodgate.__file__); print(d); assert os.path.exists(os.path.join(d, 'py.typed'))")
	if !strings.HasPrefix(strings.TrimSpace(where), venv) {
		t.Fatalf("imported floodgate from %s, want the venv %s", where, venv)
	}
	// A type checker sees the installed package's hints (py.typed): the
	// result types of both clients, and a misspelt field is an error.
	if err := exec.Command(sysPy, "-c", "import mypy").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("CI is set but mypy is missing (.ci/run installs python3-mypy)")
		}
		t.Log("no mypy: the type check is skipped")
	} else {
		check := filepath.Join(tests, "typecheck_me.py")
		if err := os.WriteFile(check, []byte(`import floodgate

async def handler(afg: floodgate.AsyncClient, fg: floodgate.Client) -> None:
    reveal_type(await afg.allow("x"))
    reveal_type(fg.allow_many(["x"]))
    async with afg.slot("llm", "x") as lease:
        reveal_type(lease)
    fg.allow("x").alowed
`), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(ctx, vpy, "-m", "mypy", "--no-incremental", "--python-version", "3.9", check)
		cmd.Dir, cmd.Env = tests, append(os.Environ(), "PYTHONPATH=")
		got, _ := cmd.CombinedOutput() // exit 1: the misspelt field
		for _, want := range []string{
			`Revealed type is "floodgate._proto.Decision"`,
			`Revealed type is "builtins.list[floodgate._proto.Decision]"`,
			`Revealed type is "floodgate._async.AsyncLease"`,
			`"Decision" has no attribute "alowed"`,
		} {
			if !strings.Contains(string(got), want) {
				t.Errorf("mypy on the installed package: want %q in\n%s", want, got)
			}
		}
	}
	out := run(tests, []string{"PYTHONPATH="}, vpy, "-m", "unittest", "test_floodgate", "test_transport")
	if !strings.Contains(out, "OK") {
		t.Fatalf("unittest: %s", out)
	}
	t.Logf("installed into %s; unit tests: %s", venv, out[strings.LastIndex(out, "Ran "):])
}
