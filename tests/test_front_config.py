"""Unit tests: [front] checked at load time, the HAProxy config it renders, the switch job's plan."""
import re
from pathlib import Path

import pytest

from fabfile.front import haproxy as front
from fabfile.config import hostconfig
from fabfile.switch import job as switch
from fabfile.config.hostconfig import ConfigError

SITE = """
[host]
address = plone.example.org
user = deploy
root = /srv/site
[buildout]
directory = .
[services]
programs = zeoserver instance1 instance2
[program:instance1]
health_url = http://127.0.0.1:8081/health
[program:instance2]
health_url = http://127.0.0.1:8082/health
"""


def load(tmp_path: Path, front_section: str, extra: str = ""):
    path = tmp_path / "prod.cfg"
    path.write_text(SITE + "[front]\n" + front_section + extra)
    return hostconfig.load(path, environ={})


def test_a_front_balances_the_programs_with_health_urls_and_switches_rolling(tmp_path):
    config = load(tmp_path, "domains = www.example.org example.org\ntls = internal\n")
    assert config.front.instances == ("instance1", "instance2")
    assert config.switch == "rolling"
    assert (config.front.http_port, config.front.https_port, config.front.control) == (80, 443, "systemd")


def test_without_a_front_the_switch_stops_and_starts(tmp_path):
    path = tmp_path / "p.cfg"
    path.write_text(SITE)
    config = hostconfig.load(path, environ={})
    assert (config.front, config.switch) == (None, "stopstart")


@pytest.mark.parametrize("section, key, words", [
    ("domains = www.example.org bad_name!\n", "domains", "is not a hostname"),
    ("domains = -leading.example.org\n", "domains", "is not a hostname"),
    ("site_path = /my site\n", "site_path", "no spaces"),
    ("site_path = /Plone/../etc\n", "site_path", "no '..'"),
    ("site_path = Plone\n", "site_path", "a path like /Plone"),
    ("http_port = 8081\n", "http_port", "is the port of instance1"),
    ("https_port = 8082\ntls = internal\ndomains = a.example\n", "https_port", "is the port of instance2"),
    ("http_port = 70000\n", "http_port", "is not a TCP port"),
    ("http_port = 0\n", "http_port", "is not a TCP port"),
    ("tls = internal\n", "tls", "needs [front] domains"),
    ("tls = acme\ndomains = a.example\n", "email", "needs an e-mail address"),
    ("tls = acme\ndomains = a.example\nemail = me@example.org\nacme_port = 8081\n", "acme_port", "is taken"),
    ("tls = acme\ndomains = a.example\nemail = me@example.org\nacme_ca_bundle = nope.pem\n",
     "acme_ca_bundle", "no such file"),
    ("acme_directory = ftp://ca.example/dir\n", "acme_directory", ""),
    ("tls = maybe\n", "tls", "is not one of"),
    ("server = apache\n", "server", "is not one of"),
    ("instances = instance9\n", "instances", "not in [services] programs"),
    ("instances = zeoserver\n", "instances", "no host:port"),
    ("drain_timeout = -1\n", "drain_timeout", "out of range: 0 or more"),
    ("drain_timeout = 10000000000\n", "drain_timeout", "at most 86400"),
    ("retry_after = -5\n", "retry_after", "out of range: 0 or more"),
    ("retry_after = 99999999999999999999\n", "retry_after", "at most 86400"),
    ("keep_warm = 9999999999\n", "keep_warm", "at most 86400"),
    ("keep_warm = \u0663\u0660\u0660\n", "keep_warm", "is not a whole number"),
    ("bind = 127.0.0.1; evil\n", "bind", "is not *, an IP address or a hostname"),
])
def test_a_bad_front_stops_naming_file_section_and_key(tmp_path, section, key, words):
    with pytest.raises(ConfigError) as error:
        load(tmp_path, section)
    message = str(error.value)
    assert f"prod.cfg: [front] {key}" in message and words in message


def test_a_rolling_switch_without_a_front_is_refused(tmp_path):
    path = tmp_path / "p.cfg"
    path.write_text(SITE + "[deploy]\nswitch = rolling\n")
    with pytest.raises(ConfigError, match=r"\[deploy\] switch = rolling needs a \[front\]"):
        hostconfig.load(path, environ={})


def test_the_haproxy_config_balances_checks_redirects_and_rewrites_for_zope(tmp_path):
    config = load(tmp_path, "domains = www.example.org\ntls = internal\nsite_path = /Plone\nhsts = true\n"
                            "control = self\n")
    text = front.render_config(config)
    assert "bind :80\n" in text and 'bind :443 ssl crt "/srv/site/front/certs/site.pem"' in text
    assert "redirect scheme https code 301 unless { ssl_fc }" in text
    assert "server instance1 127.0.0.1:8081 check" in text and "server instance2 127.0.0.1:8082 check" in text
    assert "http-check send meth GET uri '/health'" in text
    assert ("set-path /VirtualHostBase/%[ssl_fc,iif(https,http)]/%[var(txn.vhost)]:%[dst_port]"
            "/Plone/VirtualHostRoot%[path]") in text
    assert "acl our_host req.hdr(host),field(1,:),lower -m str www.example.org" in text
    assert "Strict-Transport-Security" in text
    assert 'stats socket "/srv/site/front/run/admin.sock" mode 600 level admin expose-fd listeners' in text
    assert "retry-on conn-failure" in text and "option redispatch" in text


def test_under_systemd_the_site_file_has_no_global_section(tmp_path):
    text = front.render_config(load(tmp_path, ""))
    assert "global" not in text and "ssl" not in text and "VirtualHostBase" not in text
    assert front.admin_socket(load(tmp_path, "")) == "/run/haproxy/admin.sock"


def test_maintenance_is_set_now_and_kept_for_the_next_start(tmp_path):
    config = load(tmp_path, "control = self\n")
    on = front.maintenance_command(config, True)
    assert "/srv/site/front/maintenance.map" in on and "add map /srv/site/front/maintenance.map on 1" in on
    assert "del map" in front.maintenance_command(config, False)


def test_the_switch_plan_carries_commands_and_the_front(tmp_path):
    config = load(tmp_path, "control = self\n")
    plan = switch.build_plan(config, "20261130T000000Z-aaaaaaaa", "20261129T000000Z-bbbbbbbb", "job1")
    assert plan["mode"] == "rolling" and plan["front_instances"] == ["instance1", "instance2"]
    assert plan["front"] == {"kind": "haproxy", "socket": "/srv/site/front/run/admin.sock", "backend": "srv-site",
                             "drain_timeout": 30, "configs": None, "config_path": "/srv/site/front/conf/site.cfg",
                             "tcp": False, "prefix": ""}
    assert "supervisorctl" in plan["commands"]["start"]["instance1"] and "instance1" in plan["commands"]["stop"]["instance1"]
    assert [p["script"] for p in plan["programs"]] == ["bin/zeoserver", "bin/instance1", "bin/instance2"]


def test_secrets_reach_the_job_only_to_be_taken_out_of_its_output(tmp_path):
    path = tmp_path / "p.cfg"
    path.write_text(SITE.replace("8081/health", "8081/health?token=${env:TOKEN}"))
    config = hostconfig.load(path, environ={"TOKEN": "sekrit-value"})
    plan = switch.build_plan(config, "r2", "r1", "job1")
    assert re.sub(plan["secret_pattern"], "***", "GET /health?token=sekrit-value") == "GET /health?token=***"
    assert re.sub(plan["secret_pattern"], "***", "token='sekrit%2Dvalue'") != "token='sekrit%2Dvalue'"


def test_acme_sends_the_challenge_to_lego_and_keeps_it_out_of_redirects_and_maintenance(tmp_path):
    config = load(tmp_path, "domains = www.example.org\ntls = acme\nemail = admin@example.org\ncontrol = self\n")
    text = front.render_config(config)
    assert "use_backend srv-site-acme if { path_beg /.well-known/acme-challenge/ }" in text
    assert "backend srv-site-acme\n    server lego 127.0.0.1:8402" in text
    assert "!{ path_beg /.well-known/acme-challenge/ }" in text  # maintenance
    assert config.front.acme_directory == hostconfig.LETS_ENCRYPT


def test_the_renew_script_asks_lego_for_every_domain_and_installs_only_a_changed_certificate(tmp_path):
    from fabfile.front import certificates
    config = load(tmp_path, "domains = www.example.org example.org\ntls = acme\nemail = admin@example.org\n")
    script = certificates.renew_script(config)
    assert "lego --accept-tos --email admin@example.org --server https://acme-v02.api.letsencrypt.org/directory" in script
    assert "--domains www.example.org --domains example.org" in script
    assert "renew --days 30" in script and " run;" in script and "--http.port 127.0.0.1:8402" in script
    assert "cmp -s /srv/site/front/certs/site.pem.new /srv/site/front/certs/site.pem" in script
    assert "renew --days 100000" in certificates.renew_script(config, force=True)


GREEN_SITE = (SITE.replace("8081/health\n", "8081/health\ngreen_address = 127.0.0.1:18081\n")
              .replace("8082/health\n", "8082/health\ngreen_address = 127.0.0.1:18082\n"))


def test_bluegreen_renders_both_sets_the_idle_one_disabled(tmp_path):
    path = tmp_path / "bg.cfg"
    path.write_text(GREEN_SITE + "[front]\ncontrol = self\n[deploy]\nswitch = bluegreen\n"
                      "[green]\nports:instance1 = 18081\nports:instance2 = 18082\n")
    config = hostconfig.load(path, environ={})
    text = front.render_config(config, live="green")
    assert "server instance1-blue 127.0.0.1:8081 check inter 1s fall 2 rise 1 disabled" in text
    assert "server instance1-green 127.0.0.1:18081 check inter 1s fall 2 rise 1\n" in text
    assert config.programs[1].green_health_url == "http://127.0.0.1:18081/health"
    plan = switch.build_plan(config, "r2", "r1", "job")
    assert [p["name"] for p in plan["programs"]] == ["zeoserver", "instance1-blue", "instance1-green",
                                                     "instance2-blue", "instance2-green"]
    # the job rewrites HAProxy's file after a flip, so a reload later keeps the serving set
    assert "server instance1-green 127.0.0.1:18081 check inter 1s fall 2 rise 1 disabled" in \
        plan["front"]["configs"]["blue"]
    assert "server instance1-blue 127.0.0.1:8081 check inter 1s fall 2 rise 1 disabled" in \
        plan["front"]["configs"]["green"]


@pytest.mark.parametrize("change, words", [
    ("", "needs a [green] section"),
    ("[services]\nmanager = systemd\n", "supervisor only"),
])
def test_bluegreen_without_what_it_needs_is_refused(tmp_path, change, words):
    path = tmp_path / "bg.cfg"
    green = "" if not change else "[green]\nports:instance1 = 18081\n"
    text = (GREEN_SITE + "[front]\n[deploy]\nswitch = bluegreen\n" + green)
    if change:
        text = text.replace("[services]\n", change)
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"\[deploy\] switch"):
        try:
            hostconfig.load(path, environ={})
        except ConfigError as error:
            assert words in str(error)
            raise


def test_nginx_renders_the_same_front_and_marks_idle_instances_down(tmp_path):
    from fabfile.front import nginx
    config = load(tmp_path, "server = nginx\ndomains = www.example.org\ntls = internal\nsite_path = /Plone\n"
                            "control = self\n")
    site = nginx.render_site(config)
    assert "listen 443 ssl;" in site and "ssl_certificate /srv/site/front/certs/site.pem;" in site
    assert "return 301 https://$host$request_uri;" in site
    assert "/VirtualHostBase/$scheme/$vhost_" in site and ":$server_port/Plone/VirtualHostRoot$request_uri;" in site
    assert "include /srv/site/front/maintenance.inc;" in site and "add_header Retry-After 30 always;" in site
    assert "server 127.0.0.1:8081;  # instance1" in nginx.render_upstream(config)
    plan = switch.build_plan(config, "r2", "r1", "job")
    assert plan["front"]["kind"] == "nginx" and plan["front"]["enabled"] == ["instance1", "instance2"]
    assert plan["front"]["upstream_file"] == "/srv/site/front/conf/upstream.inc"


def test_a_root_too_long_for_haproxys_admin_socket_is_refused_only_when_the_site_runs_haproxy(tmp_path):
    long_root = "/srv/" + "s" * 75  # <root>/front/run/admin.sock: 101 bytes, HAProxy takes 97
    path = tmp_path / "prod.cfg"
    path.write_text(SITE.replace("root = /srv/site", f"root = {long_root}") + "[front]\ncontrol = self\n")
    with pytest.raises(ConfigError, match=r"\[host\] root: too long: HAProxy's admin socket .* 101 bytes"):
        hostconfig.load(path, environ={})
    path.write_text(SITE.replace("root = /srv/site", f"root = {long_root}") + "[front]\ncontrol = systemd\n")
    assert hostconfig.load(path, environ={}).root == long_root  # Debian's haproxy.service: /run/haproxy/admin.sock


@pytest.mark.parametrize("path, written", [
    ("/health${HOME}", "'/health${HOME}'"),       # HAProxy expands $ inside double quotes, not inside single
    ("/health$HOME", "'/health$HOME'"),
    ("/it's", "'/it'\\''s'"),
    ('/a"b\\d?q=1', "'/a\"b\\d?q=1'"),
])
def test_a_health_url_reaches_haproxy_in_strong_quotes_so_nothing_in_it_is_expanded(tmp_path, path, written):
    load(tmp_path, "control = self\n")
    path_file = tmp_path / "prod.cfg"
    path_file.write_text(path_file.read_text().replace("8081/health", "8081" + path.replace("$", "$$")))
    config = hostconfig.load(path_file, environ={})
    assert front.check_path(config) == path
    assert f"    http-check send meth GET uri {written}\n" in front.render_config(config)


@pytest.mark.skipif(not Path("/usr/sbin/haproxy").exists(), reason="needs haproxy")
def test_haproxy_reads_a_health_path_with_dollars_and_quotes_as_one_word(tmp_path):
    import subprocess
    path_file = tmp_path / "prod.cfg"
    path_file.write_text(SITE.replace("8081/health", "8081/h$${HOME}'x\"#y") + "[front]\ncontrol = self\n")
    config = hostconfig.load(path_file, environ={})
    (tmp_path / "maintenance.html").write_text("down")
    (tmp_path / "maintenance.map").write_text("")
    text = front.render_config(config).replace("/srv/site/front/run", str(tmp_path)).replace(
        "/srv/site/front", str(tmp_path))
    (tmp_path / "haproxy.cfg").write_text(text)
    result = subprocess.run(["/usr/sbin/haproxy", "-c", "-f", str(tmp_path / "haproxy.cfg")],
                            capture_output=True, text=True, env={"HOME": "/root", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("url", ["http://127.0.0.1:8081/a\tb", "http://127.0.0.1:8081/\x7f",
                                 "http://127.0.0.1:8081/\x1b[2J"])
def test_a_health_url_with_control_characters_is_refused(tmp_path, url):
    path_file = tmp_path / "prod.cfg"
    path_file.write_text(SITE.replace("http://127.0.0.1:8081/health", url))
    with pytest.raises(ConfigError, match=r"prod.cfg: \[program:instance1\] health_url: .*control character"):
        hostconfig.load(path_file, environ={})


@pytest.mark.parametrize("front_section, key, words", [
    ("domains = 192.0.2.10\ntls = internal\n", "domains", "'192.0.2.10' is an IP address"),
    ("domains = 2001:db8::1\ntls = acme\nemail = me@example.org\n", "domains", "is an IP address"),
    ("domains = www.example.org www.example.org\n", "domains", "'www.example.org' is named twice"),
    ("instances = instance1 instance2 instance1\n", "instances", "'instance1' is named twice"),
])
def test_a_front_that_cannot_work_as_given_is_refused_at_load(tmp_path, front_section, key, words):
    with pytest.raises(ConfigError) as error:
        load(tmp_path, front_section)
    assert f"prod.cfg: [front] {key}:" in str(error.value) and words in str(error.value), str(error.value)


@pytest.mark.parametrize("change, words", [
    (("127.0.0.1:18081", "127.0.0.1:80"), "green_address: port 80 is the front's http_port"),
    (("127.0.0.1:18081", "127.0.0.1:8082"), "green_address: 127.0.0.1:8082 is taken by another instance"),
    (("ports:instance1 = 18081\n", "ports:instance1 = 18081\n[overrides]\nports:zeo = 18081\n"),
     "green_address: port 18081 is [overrides] ports:zeo"),
])
def test_a_green_address_on_a_port_in_use_is_refused(tmp_path, change, words):
    path = tmp_path / "bg.cfg"
    text = (GREEN_SITE + "[front]\ncontrol = self\n[deploy]\nswitch = bluegreen\n"
            "[green]\nports:instance1 = 18081\nports:instance2 = 18082\n")
    path.write_text(text.replace(*change))
    with pytest.raises(ConfigError) as error:
        hostconfig.load(path, environ={})
    assert words in str(error.value), str(error.value)


def test_green_options_without_a_bluegreen_switch_are_refused_not_ignored(tmp_path):
    path = tmp_path / "g.cfg"
    path.write_text(SITE + "[front]\n[green]\nports:instance1 = 18081\n")
    with pytest.raises(ConfigError, match=r"g.cfg: \[green\]: .*only with \[deploy\] switch = bluegreen"):
        hostconfig.load(path, environ={})


def haproxy_words(line: str) -> list[str]:
    """A config line split as HAProxy's parser does (configuration.txt 2.2): '...' takes everything
    literally, "..." and bare text take backslash escapes, and expand $NAME (here: refused, so seen)."""
    words, word, quote, index, started = [], "", None, 0, False
    while index < len(line):
        character = line[index]
        if quote == "'":
            if character == "'":
                quote = None
            else:
                word += character
        elif character == "\\" and index + 1 < len(line):
            index += 1
            word += line[index]
            started = True
        elif character == "$" and quote != "'":
            raise AssertionError(f"HAProxy would expand $ in {line!r}")
        elif quote == '"':
            if character == '"':
                quote = None
            else:
                word += character
        elif character in "'\"":
            quote, started = character, True
        elif character == "#":
            break
        elif character in " \t":
            if started:
                words.append(word)
            word, started = "", False
        else:
            word += character
            started = True
        index += 1
    assert quote is None, f"an unclosed quote in {line!r}"
    return words + ([word] if started else [])


def hostile_paths(count: int, seed: int = 20):
    import random
    chosen = random.Random(seed)
    alphabet = "/abc019 '\"\\$#{}%;()!*&|<>`~=?:@,\u00e4\u00b2\u0663\u2028"
    for _ in range(count):
        yield "/" + "".join(chosen.choice(alphabet) for _ in range(chosen.randint(0, 24)))


def test_every_hostile_path_in_strong_quotes_reads_back_as_given_and_haproxy_takes_them_all(tmp_path):
    import subprocess
    from fabfile.front import shared
    paths = list(hostile_paths(250))
    for path in paths:
        line = f"    http-check send meth GET uri {shared.strong_quote(path)}"
        assert haproxy_words(line) == ["http-check", "send", "meth", "GET", "uri", path]
    if not Path("/usr/sbin/haproxy").exists():
        return
    text = "defaults\n    mode http\n    timeout connect 1s\n    timeout client 1s\n    timeout server 1s\n" \
        "frontend f\n    bind 127.0.0.1:65000\n    default_backend b0\n" + "".join(
        f"backend b{n}\n    option httpchk\n    http-check send meth GET uri {shared.strong_quote(path)}\n"
        f"    server s 127.0.0.1:8081 check\n" for n, path in enumerate(paths))
    (tmp_path / "h.cfg").write_text(text)
    result = subprocess.run(["/usr/sbin/haproxy", "-c", "-f", str(tmp_path / "h.cfg")], capture_output=True,
                            text=True, env={"HOME": "/root", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stdout + result.stderr


def test_double_quotes_would_have_let_haproxy_expand_a_dollar():
    from fabfile.front import shared
    with pytest.raises(AssertionError, match="would expand"):
        haproxy_words(f"uri {shared.quote('/health${HOME}')}")
