"""Commands in the site, built without a host: every argument quoted once, the code passed on.

The same commands run against the sandbox host in ``tests/test_push.py``.
"""
from __future__ import annotations

import subprocess

import pytest
from invoke import Exit

from fabfile.config import hostconfig
from fabfile import onhost
from fabfile.data import sitecommands


@pytest.fixture
def config(tmp_path):
    configs = tmp_path / "hostconfigs"
    configs.mkdir()
    (configs / "t.cfg").write_text("[host]\naddress = example.org\nuser = deploy\nroot = /srv/my-site\n"
                                   "[buildout]\ndirectory = ../b\n[services]\nprograms = zeoserver web instance2\n"
                                   "[program:instance2]\ncommand = bin/instance2 console\n"
                                   "[backup]\nzeopack = bin/zeopack -p 8100\npack_days = 3\n")
    return hostconfig.load(configs / "t.cfg", environ={})


@pytest.mark.parametrize("argv, tokens", [
    (["fab", "-H", "x", "run", "--", "echo", "a; b"], ["echo", "a; b"]),
    (["fab", "-H", "x", "run", "--", "sh", "-c", "exit 7", "--", "x"], ["sh", "-c", "exit 7", "--", "x"]),
    (["fab", "-H", "x", "run"], []),
])
def test_the_remainder_is_the_tokens_after_the_first_double_dash(argv, tokens):
    assert sitecommands.remainder_tokens(argv) == tokens


def test_run_quotes_each_argument_once(config):
    command = sitecommands.run_in_site(config, ["echo", "a; touch /tmp/x", "$(id)"])
    assert command == ("cd /srv/my-site/current && export PATH=/srv/my-site/current/bin:/srv/my-site/venv/bin"
                       ":\"$PATH\" && echo 'a; touch /tmp/x' '$(id)'")


@pytest.mark.parametrize("argument", ["a; touch {m}", "$(touch {m})", "`touch {m}`", "a' ; touch {m}; '",
                                      "a\ntouch {m}", "a && touch {m} || true"])
def test_no_argument_runs_another_command_in_a_real_shell(config, tmp_path, argument):
    marker = tmp_path / "marker"
    text = argument.format(m=marker)
    command = sitecommands.run_in_site(config, ["echo", text]).split(" && ", 2)[2]  # without cd and PATH
    ran = subprocess.run(["sh", "-c", command], capture_output=True, text=True)
    assert ran.stdout == text + "\n" and not marker.exists()


def test_the_uploaded_script_is_removed_and_the_exit_code_kept(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("")
    ran = subprocess.run(["sh", "-c", sitecommands.then_remove("exit 5", str(script))])
    assert ran.returncode == 5 and not script.exists()


def test_instance_run_uses_bin_instance_run_for_zope(config):
    command = sitecommands.instance_run_command(config, "bin/instance", "zope", "#!/srv/venv/bin/python",
                                                "/srv/my-site/.instance-run-1.py", ["--dry", "a b"])
    assert "&& bin/instance run /srv/my-site/.instance-run-1.py --dry 'a b' ); rc=$?; " in command
    assert command.endswith("rm -f -- /srv/my-site/.instance-run-1.py; exit $rc")


def test_instance_run_elsewhere_uses_the_scripts_python_and_its_eggs(config):
    command = sitecommands.instance_run_command(config, "bin/instance1", "python", "#!/srv/venv/bin/python3 -s",
                                                "/tmp/s.py", [])
    assert "&& /srv/venv/bin/python3 -s -c " in command and " bin/instance1 /tmp/s.py )" in command


def test_the_instance_program_is_named_or_the_first_instance(config):
    assert sitecommands.instance_program(config, None).name == "instance2"
    assert sitecommands.program_script(sitecommands.instance_program(config, None)) == "bin/instance2"
    assert sitecommands.program_script(sitecommands.instance_program(config, "web")) == "bin/web"
    with pytest.raises(Exit) as stopped:
        sitecommands.instance_program(config, "nope")
    assert stopped.value.code == 2 and "zeoserver web instance2" in stopped.value.message


def test_pack_runs_the_configured_zeopack_with_the_days(config):
    assert sitecommands.pack_command(config, 0).endswith(
        "&& /srv/my-site/current/bin/zeopack -p 8100 -d 0")
    assert sitecommands.pack_days(None, config) == 3
    with pytest.raises(Exit):
        sitecommands.pack_days("-1", config)


def test_siterun_takes_the_eggs_a_buildout_script_puts_first(tmp_path):
    eggs = tmp_path / "eggs"
    (eggs / "pkg").mkdir(parents=True)
    (eggs / "pkg" / "__init__.py").write_text("NAME = 'from the egg'\n")
    bin_script = tmp_path / "instance1"
    bin_script.write_text(f"#!/usr/bin/python3\n\nimport sys\nsys.path[0:0] = [\n  {str(eggs)!r},\n  ]\n\n"
                          "import pkg\n")
    script = tmp_path / "hello.py"
    script.write_text("import sys, pkg\nprint(pkg.NAME, sys.argv[1:], __name__)\n")
    ran = subprocess.run(["python3", "-c", onhost.source("siterun"), str(bin_script), str(script), "x y"],
                         capture_output=True, text=True)
    assert ran.stdout == "from the egg ['x y'] __main__\n", ran.stderr


def test_a_shebang_line_gives_the_interpreter():
    assert sitecommands.interpreter("#!/usr/bin/env python3") == ["/usr/bin/env", "python3"]
    with pytest.raises(ValueError):
        sitecommands.interpreter("import sys")
