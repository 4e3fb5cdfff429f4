"""Integration: deploy the example site over SSH to a real sshd, change it, break it, roll back.

The tests run in order on one site (a deploy costs seconds, not minutes, once the
eggs are there); each asserts what a user would check: the link, the page, the data,
the exit code and the message.
"""
from __future__ import annotations

import http.server
import json
import re
import signal
import threading
import time

import pytest

from sites import make_site


@pytest.fixture(scope="module")
def webhook():
    """A webhook receiver on 127.0.0.1 that keeps what it was sent."""
    received: list[tuple[str, dict]] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, json.loads(body)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], received
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def site(sandbox_host, tmp_path_factory, webhook):
    port, _ = webhook
    extra = f"[notify]\nwebhook = http://127.0.0.1:{port}/hook?token=${{env:HOOK_TOKEN}}\n"
    test_site = make_site(tmp_path_factory.mktemp("deploy"), sandbox_host, extra,
                          health_path="health?token=${env:HEALTH_TOKEN}")
    test_site.env["HOOK_TOKEN"] = "hunter2-secret"
    test_site.env["HEALTH_TOKEN"] = "health-s3cret-token"
    yield test_site
    test_site.stop_everything()


def test_first_deploy_serves_both_instances(site, webhook):
    result = site.fab("deploy")
    release = site.current()
    assert (site.root / "releases" / release / "bin" / "instance1").exists()
    assert re.fullmatch(r"1\.0\.post\d{14}\+src\.[0-9a-f]{8}", site.get("version"))
    assert site.get("version", "instance2") == site.get("version")
    site.add("first", "blob bytes")
    assert [o["title"] for o in site.objects("instance2")] == ["first"]
    assert f"deployed {release}" in result.stdout
    assert (site.root / "releases" / release / "var").resolve() == (site.root / "var").resolve()


def test_the_webhook_hears_start_and_success_without_secrets(site, webhook):
    _, received = webhook
    events = [payload["event"] for _, payload in received]
    assert events[:2] == ["deploy-started", "deploy-succeeded"]
    assert all(payload["release"] == site.current() and payload["host"] == "test" for _, payload in received)
    assert "hunter2-secret" not in json.dumps([payload for _, payload in received])
    assert "hunter2-secret" not in (site.root / "deploy.log").read_text()


def test_status_shows_every_health_url_answering_without_its_token(site):
    result = site.fab("status")
    assert result.stdout.count("ok") >= 2 and "token=***" in result.stdout
    assert "health-s3cret-token" not in result.stdout + result.stderr
    assert "health-s3cret-token" not in (site.root / "deploy.log").read_text()


def test_second_deploy_of_the_same_tree_changes_nothing_and_is_one_read(site, sandbox_host):
    before = (site.current(), site.release_ids(), len(site.deploy_log()))
    log = sandbox_host.state_dir / "sshd.log"
    offset = log.stat().st_size
    result = site.fab("deploy")
    assert "nothing to deploy" in result.stdout
    assert (site.current(), site.release_ids(), len(site.deploy_log())) == before
    seen = log.read_bytes()[offset:].decode()  # st_size counts bytes: the log holds non-ASCII text
    # one login, one read of the host (a second one only when a program had just started): no lock taken
    assert seen.count("Accepted publickey") == 1, seen
    assert 1 <= seen.count("Starting session: command") <= 2, seen


def test_dry_run_changes_nothing_on_the_host(site):
    site.change_code("# a change for the dry run")
    before = (site.current(), site.release_ids(), len(site.deploy_log()), sorted(p.name for p in (site.root / "dists").iterdir()))
    result = site.fab("--dry", "deploy")
    assert "plan only: the host is unchanged" in result.stdout
    after = (site.current(), site.release_ids(), len(site.deploy_log()), sorted(p.name for p in (site.root / "dists").iterdir()))
    assert after == before
    assert not (site.root / ".lock").exists()


def test_the_plan_says_what_the_deploy_then_does(site):
    old_version = site.get("version")
    planned = site.fab("deploy", "--plan").stdout
    egg = re.search(r"egg demoapp: (\S+) -> (\S+)", planned)
    upload = re.search(r"upload (\d+) of (\d+) distributions \((\d+) bytes\)", planned)
    release = re.search(r"release (\S+) for test", planned)
    assert egg and egg.group(1) == old_version and upload.group(1) == "1", planned
    done = site.fab("deploy").stdout
    assert site.get("version") == egg.group(2)
    assert site.current().split("-")[1] == release.group(1).split("-")[1]
    assert f"upload 1 of {upload.group(2)} distributions ({upload.group(3)} bytes)" in done
    assert site.deploy_log()[-1]["eggs"] == {"demoapp": egg.group(2)}


def test_a_code_change_gives_a_new_release_and_the_data_stays(site):
    site.change_code("# a second change")
    old_release, old_version = site.current(), site.get("version")
    site.fab("deploy")
    assert site.current() != old_release
    assert site.get("version") != old_version
    assert site.get("version", "instance2") == site.get("version")
    assert [o["title"] for o in site.objects()] == ["first"]
    assert site.deploy_log()[-1]["event"] == "deploy"
    assert site.deploy_log()[-1]["previous"] == old_release


def test_rollback_serves_the_old_code_with_the_data_intact(site):
    releases = site.release_ids()
    new_version = site.get("version")
    site.add("second", "more bytes")
    site.fab("rollback")
    assert site.current() == releases[-2]
    assert site.get("version") != new_version
    assert [o["title"] for o in site.objects()] == ["first", "second"]
    site.fab("rollback", "--to", releases[-1])
    assert site.current() == releases[-1] and site.get("version") == new_version


def test_rollback_to_an_unknown_release_names_it(site):
    result = site.fab("rollback", "--to", "20200101T000000Z-deadbeef", check=False)
    assert result.returncode == 1
    assert "no built release 20200101T000000Z-deadbeef" in result.stderr


def test_a_buildout_failure_leaves_current_and_the_site_untouched(site):
    current, version = site.current(), site.get("version")
    base = site.buildout / "base.cfg"
    original = base.read_text()
    base.write_text(original + "\n[broken]\nrecipe = no.such.recipe\n[buildout]\nparts += broken\n")
    try:
        result = site.fab("deploy", check=False)
    finally:
        base.write_text(original)
    assert result.returncode == 1
    assert "buildout failed" in result.stderr and "no.such.recipe" in result.stderr
    assert site.current() == current and site.get("version") == version
    assert not (site.root / ".lock").exists()


def test_a_failing_health_check_rolls_back_by_itself_and_marks_the_release_bad(site, webhook):
    current, version = site.current(), site.get("version")
    app = site.buildout / "src" / "demoapp" / "demoapp" / "app.py"
    original = app.read_text()
    app.write_text(original.replace("if self.store.is_healthy():", "if False:"))
    try:
        result = site.fab("deploy", check=False)
    finally:
        app.write_text(original)
    assert result.returncode == 1
    assert "health check failed" in result.stderr
    assert site.current() == current and site.get("version") == version
    bad = [r for r in site.release_ids() if (site.root / "releases" / r / ".deploy" / "bad.json").exists()]
    assert len(bad) == 1 and "health" in (site.root / "releases" / bad[0] / ".deploy" / "bad.json").read_text()
    assert "bad: health check failed" in site.fab("releases").stdout.replace("\n", " ") or bad[0][:10] in site.fab("releases").stdout
    assert webhook[1][-1][1]["event"] == "deploy-failed"
    # rollback never picks the bad release
    site.fab("rollback")
    assert site.current() != bad[0]
    site.fab("rollback", "--to", current)


def test_a_second_deploy_while_one_holds_the_lock_stops_with_the_holders_details(site):
    site.change_code("# a change for the lock test")
    first = site.fab_in_background("deploy")
    try:
        for _ in range(300):
            if (site.root / ".lock" / "holder").exists():
                break
            time.sleep(0.1)
        second = site.fab("deploy", check=False)
    finally:
        output, _ = first.communicate(timeout=600)
    assert second.returncode == 1
    assert "is locked by" in second.stderr and "for deploy" in second.stderr
    assert first.returncode == 0, output


def test_ctrl_c_during_buildout_leaves_the_site_serving_and_the_next_deploy_succeeds(site):
    current, version = site.current(), site.get("version")
    site.change_code("# a change interrupted during buildout")
    deploy = site.fab_in_background("deploy")
    pid_files = []
    for _ in range(1200):
        pid_files = list((site.root / "releases").glob("*/.deploy/buildout.pid"))
        if pid_files or deploy.poll() is not None:
            break
        time.sleep(0.05)
    assert pid_files, "buildout never started"
    deploy.send_signal(signal.SIGINT)
    output, _ = deploy.communicate(timeout=120)
    assert deploy.returncode != 0, output
    assert site.current() == current and site.get("version") == version
    assert not (site.root / ".lock").exists()
    assert site.deploy_log()[-1]["event"] == "deploy-failed"
    site.fab("deploy")
    assert site.current() != current and site.get("version") != version


def test_cleanup_keeps_the_newest_releases(site):
    site.fab("cleanup")
    built = [r for r in site.release_ids() if (site.root / "releases" / r / ".deploy" / "built.json").exists()]
    assert len(site.release_ids()) <= 5 + 1
    assert site.current() in built


def test_a_task_argument_of_the_wrong_type_gets_a_message_not_a_traceback(site):
    result = site.fab("logs", "--lines", "abc", check=False)
    assert result.returncode == 2 and "logs --lines takes a whole number" in result.stderr
    assert "Traceback" not in result.stderr
    assert "== instance1" in site.fab("logs", "--lines", "5").stdout
