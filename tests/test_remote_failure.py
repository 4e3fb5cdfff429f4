"""Unit: a failed command on the host is said in a few lines: its start, its exit code, its own error."""
from invoke.runners import Result

from fabfile.config import hostconfig
from fabfile.remote.site import RemoteFailure


def test_a_remote_failure_names_the_command_start_and_its_error_with_secrets_redacted(tmp_path):
    path = tmp_path / "site.cfg"
    path.write_text("[host]\naddress = plone.example.org\nroot = /srv/site\n[buildout]\ndirectory = .\n"
                    "[services]\nprograms = instance1\n[notify]\nwebhook = https://x/${env:T}\n")
    config = hostconfig.load(path, environ={"T": "s3cret-token"})
    script = "import sys\n" + "x = 1\n" * 400 + "sys.exit(3)"
    result = Result(command=f"python3 -c '{script}' s3cret-token", exited=3, hide=("stdout", "stderr"),
                    stderr="Traceback (most recent call last):\n  ...\nValueError: s3cret-token is bad\n")
    said = str(RemoteFailure(result, config))
    assert said.startswith("on plone.example.org: `python3 -c 'import sys` exited 3:")
    assert "ValueError: *** is bad" in said and "s3cret-token" not in said
    assert "x = 1" not in said and len(said.splitlines()) <= 6
