"""Unit tests: hostile or clumsy host config values are refused at load time, naming file, section and key."""
from pathlib import Path

import pytest

from fabfile.config import hostconfig
from fabfile.config.hostconfig import ConfigError

BASE = {
    "host": {"address": "plone.example.org", "user": "deploy", "app_user": "plone", "root": "/srv/site"},
    "buildout": {"directory": ".", "shared": "var"},
    "services": {"programs": "zeoserver instance1"},
    "program:instance1": {"command": "bin/instance1 console", "health_url": "http://127.0.0.1:8081/health"},
    "deploy": {"keep_releases": "5"},
    "backup": {"keep": "2"},
}
# values that arrive through ${env:…} can hold what a file cannot
ENVIRON = {"LF": "https://hooks.example/a\nX-Injected: 1", "CR": "echo pre\rrm -rf /", "SEMICOLON": "'a ;b'",
           "HASH": "' #x'"}


def write(tmp_path: Path, section: str | None = None, key: str | None = None, value: str | None = None,
          name: str = "site.cfg") -> Path:
    """The base config with ``[section] key = value`` set (added, or replacing the base's)."""
    sections = {name: dict(options) for name, options in BASE.items()}
    if section:
        sections.setdefault(section, {})[key] = value
    path = tmp_path / name
    path.write_text("".join(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in options.items())
                            for name, options in sections.items()))
    return path


@pytest.mark.parametrize("section, key, value, words", [
    # paths cannot leave the site
    ("buildout", "shared", "var ../../../victim", "leaves the release"),
    ("buildout", "shared", "../x", "leaves the release"),
    ("buildout", "shared", "var/../../x", "leaves the release"),
    ("buildout", "shared", "/etc", "is absolute"),
    ("buildout", "shared", ".", "is the release itself"),
    ("buildout", "shared", "var/..", "is the release itself"),
    ("buildout", "shared", "var ./var/", "'var' is named twice"),
    ("buildout", "shared", "var var/filestorage", "'var/filestorage' is inside 'var'"),
    ("backup", "filestorage", "../../etc/passwd", "leaves <root>/var"),
    ("backup", "blobstorage", "../blobs", "leaves <root>/var"),
    ("backup", "blobstorage", ".", "is <root>/var itself"),
    ("backup", "additional_filestorages", "catalog:../../x.fs", "leaves <root>/var"),
    ("backup", "additional_filestorages", "bad/name", "is not NAME or NAME:PATH"),
    ("backup", "location", "../../../tmp/x", "leaves <root>/backups"),
    ("backup", "blob_location", "/srv/site/backups/../../../etc", "has a '..'"),
    ("backup", "snapshot_location", ".", "is <root>/backups itself"),
    ("backup", "blob_snapshot_location", "x/../../y", "leaves <root>/backups"),
    ("host", "root", "/", "is / or a system directory"),
    ("host", "root", "//", "is / or a system directory"),
    ("host", "root", "/srv/../etc", "has a '..'"),
    ("host", "root", "/srv/site/..", "has a '..'"),
    ("host", "root", "/srv/a;b", "has one of ; { } #"),
    ("host", "root", "/srv/a{b}", "has one of ; { } #"),
    ("host", "root", "/etc/site", "is / or a system directory"),
    ("host", "root", "/usr/local/site", "is / or a system directory"),
    ("host", "root", "/proc", "is / or a system directory"),
    ("host", "root", "/boot/x", "is / or a system directory"),
    # values cannot change a file's structure
    ("host", "address", "plone.example.org\n  evil.example.org", "has a line break"),
    ("overrides", "ports:instance1", "8081\n  [evil]\n  x = 1", "has a line break"),
    ("notify", "webhook", "${env:LF}", "has a line break"),
    ("backup", "pre_command", "${env:CR}", "has a line break"),
    ("buildout", "config", "production.cfg\0x", "a NUL character"),
    ("host", "packages", "git\0curl", "a NUL character"),
    ("overrides", "ports:instance 1", "8081", "plain buildout names"),
    ("overrides", "ports:", "8081", "plain buildout names"),
    ("green", "a/b:c", "1", "plain buildout names"),
    ("services", "programs", "zeoserver instance1 ../evil", "'../evil' is not a program name"),
    ("services", "programs", "zeoserver instance1 a:b", "'a:b' is not a program name"),
    ("services", "programs", "zeoserver instance1 -x", "'-x' is not a program name"),
    ("services", "programs", "zeoserver instance1 zeoserver", "'zeoserver' is named twice"),
    ("buildout", "python", "python3; rm -rf /", "is not a command (python3.11) or an absolute path"),
    ("buildout", "python", "$(id)", "without spaces or shell characters"),
    ("buildout", "python", "bin/python", "is not a command"),
    ("buildout", "python", "/usr/bin/python 3", "is not a command"),
    ("host", "user", "Deploy", "is not a user name"),
    ("host", "app_user", "plone;id", "is not a user name"),
    ("host", "root_user", "-root", "is not a user name"),
    ("host", "user", "a" * 33, "at most 32 characters"),
    ("host", "address", "root@plone.example.org", "is not a hostname, an IPv4 or an IPv6 address"),
    ("host", "address", "-oProxyCommand=id", "is not a hostname"),
    ("host", "address", "plone.example.org -p 2222", "is not a hostname"),
    ("program:instance1", "health_url", "file:///etc/passwd", "is not an http:// or https:// URL"),
    ("program:instance1", "health_url", "http:///health", "URL with a host"),
    ("program:instance1", "health_url", "http://127.0.0.1:99999/", "a port 1-65535"),
    ("program:instance1", "health_url", "127.0.0.1:8081/health", "is not an http:// or https:// URL"),
    ("program:instance1", "command", "bin/instance1 'console", "close every quote"),
    ("program:instance1", "command", "", "is empty"),
    ("program:instance1", "command", "bin/instance1 console ${env:SEMICOLON}", "supervisor's config reads the rest"),
    ("program:instance1", "command", "bin/instance1 console ${env:HASH}", "supervisor's config reads the rest"),
    # numbers in range
    ("deploy", "keep_releases", "0", "out of range: 1 or more"),
    ("deploy", "keep_releases", "-3", "out of range: 1 or more"),
    ("deploy", "health_timeout", "0", "out of range: 1 or more"),
    ("backup", "keep", "-1", "out of range: 0 or more"),
    ("backup", "keep_blob_days", "-1", "out of range: 0 or more"),
    ("backup", "pack_days", "-7", "out of range: 0 or more"),
    ("deploy", "keep_releases", "five", "'five' is not a whole number"),
    ("host", "port", "0", "is not a TCP port (1-65535)"),
    ("host", "port", "70000", "is not a TCP port (1-65535)"),
    ("host", "root", "/srv/" + "a" * 90, "supervisor's socket"),
    # numbers in ASCII digits, each with a bound its use can hold
    ("deploy", "health_timeout", "\u0666\u0660", "is not a whole number (digits 0-9)"),       # Arabic-Indic 60
    ("deploy", "keep_releases", "\uff15", "is not a whole number (digits 0-9)"),              # fullwidth 5
    ("deploy", "keep_releases", "\u00b2", "is not a whole number (digits 0-9)"),
    ("deploy", "keep_releases", "1_000", "is not a whole number (digits 0-9)"),
    ("host", "port", "\u0662\u0662", "is not a whole number (digits 0-9)"),
    ("deploy", "health_timeout", "99999999999999999999999", "out of range: 1 or more, at most 86400"),
    ("deploy", "health_timeout", "9" * 5000, "out of range: 1 or more, at most 86400"),
    ("deploy", "min_uptime", "86401", "at most 86400"),
    ("hooks", "hook_timeout", "10000000000", "at most 86400"),
    ("deploy", "keep_releases", "100000", "at most 10000"),
    ("backup", "keep", "99999", "at most 10000"),
    ("backup", "keep_blob_days", "100000", "at most 36500"),
    ("backup", "pack_days", "1e9", "is not a whole number"),
    ("host", "swap", "\u0665\u0661\u0662M", "is not auto, off or a size"),
    ("backup", "location", "/etc/cron.d", "is / or in a system directory"),
    ("backup", "blob_location", "/etc", "is / or in a system directory"),
    ("backup", "snapshot_location", "/", "is / or in a system directory"),
    ("backup", "zip_location", "/usr/lib/x", "is / or in a system directory"),
    ("backup", "filestorage", "/etc/passwd", "is / or in a system directory"),
    ("backup", "blobstorage", "//proc/1", "is / or in a system directory"),
    ("backup", "additional_filestorages", "catalog:/etc/catalog.fs", "is / or in a system directory"),
    ("backup", "alternative_restore_source", "Data /etc/cron.d", "is / or in a system directory"),
    ("backup", "location", "/srv/site/var/filestorage", "is inside the data it backs up (/srv/site/var/filestorage)"),
    ("backup", "blob_location", "/srv/site/var/blobstorage/x", "is inside the data it backs up"),
    ("backup", "schedule_full", "sometimes", "is not hourly, daily, weekly, monthly or five cron fields"),
    ("backup", "schedule_full", "99 3 * * *", "in their ranges"),
    ("backup", "schedule_incremental", "15 24 * * *", "in their ranges"),
    ("backup", "schedule_incremental", "15 3 0 * *", "in their ranges"),
    ("backup", "schedule_incremental", "*/0 * * * *", "in their ranges"),
    ("backup", "schedule_full", "15 3 * * 1 % rm", "five cron fields"),
    ("backup", "schedule_full", "15 3 * * \u0661", "five cron fields"),
    ("backup", "offsite", "ssh://backup@h.example.org/srv/backups?x=1", "has a query (?...) or a fragment"),
    ("backup", "offsite", "ssh://backup@h.example.org/srv/backups#x", "has a query (?...) or a fragment"),
    ("backup", "offsite", "ssh://backup@h.example.org/srv/backups?", "has a query (?...) or a fragment"),
    ("backup", "offsite", "ssh://backup@h.example.org:\u0662\u0662/srv", "a port 1-65535"),
    ("notify", "syslog", "local9", "'local9' is not a syslog facility (user, daemon, local0"),
    ("notify", "syslog", "LOCAL3", "is not a syslog facility"),
    ("program:instance1", "address", "127.0.0.1:99999", "not host:port with a port 1-65535"),
    ("program:instance1", "address", "127.0.0.1:\u0668\u0660\u0668\u0661", "not host:port with a port 1-65535"),
    ("program:instance1", "green_address", "127.0.0.1:0", "not host:port with a port 1-65535"),
])
def test_a_hostile_value_is_refused_naming_file_section_and_key(tmp_path, section, key, value, words):
    path = write(tmp_path, section, key, value)
    with pytest.raises(ConfigError) as caught:
        hostconfig.load(path, environ=ENVIRON)
    message = str(caught.value)
    assert message.startswith(f"{path.resolve()}: [{section}] {key}:"), message
    assert words in message, message


@pytest.mark.parametrize("section, key, value, attribute, expected", [
    ("buildout", "shared", "var other/dir", "shared", ("var", "other/dir")),
    ("buildout", "shared", "./var/ other//dir", "shared", ("var", "other/dir")),
    ("buildout", "shared", "\n  var\n  other/dir", "shared", ("var", "other/dir")),  # a list: an item a line
    ("buildout", "python", "/usr/bin/python3", "python", "/usr/bin/python3"),
    ("buildout", "python", "python3.11", "python", "python3.11"),
    ("host", "address", "192.0.2.10", "address", "192.0.2.10"),
    ("host", "address", "2001:db8::1", "address", "2001:db8::1"),
    ("host", "user", "deploy_2$", "user", "deploy_2$"),
    ("host", "root", "/srv/site/", "root", "/srv/site"),
    ("host", "root", "${here}/../site", "root", None),  # relative to the config file: the sandbox's way
    ("services", "programs", "zeoserver instance1 worker.2", "programs", None),
    ("services", "programs", "zeoserver\n  instance1", "programs", None),
    ("program:instance1", "command", "bin/instance1 console a;b#c", "programs", None),
    ("backup", "additional_filestorages", "catalog\n  other:filestorage/other.fs", "backup_additional_filestorages",
     ("catalog", "other:filestorage/other.fs")),
    ("backup", "blob_location", "/mnt/blobs", "backup_locations", (("blob_location", "/mnt/blobs"),)),
    ("backup", "location", "full/./filestorage", "backup_locations", (("location", "full/./filestorage"),)),
    ("backup", "blobstorage", "", "backup_blobstorage", ""),
    ("backup", "keep", "0", "backup_keep", 0),
    ("backup", "schedule_full", "15 3 * * 0", "backup_schedule_full", "15 3 * * 0"),
    ("backup", "schedule_full", "*/15 0-6,22-23 1-31 jan-dec mon-fri", "backup_schedule_full", None),
    ("backup", "schedule_incremental", "hourly", "backup_schedule_incremental", "hourly"),
])
def test_plain_values_still_load(tmp_path, section, key, value, attribute, expected):
    path = write(tmp_path, section, key, value)
    config = hostconfig.load(path, environ={})
    if expected is not None:
        assert getattr(config, attribute) == expected


def test_health_url_and_command_with_arguments_load(tmp_path):
    config = hostconfig.load(write(tmp_path), environ={})
    assert config.programs[1].command == "bin/instance1 console"
    assert config.programs[1].health_url == "http://127.0.0.1:8081/health"


def test_a_byte_order_mark_at_the_start_is_fine(tmp_path):
    path = write(tmp_path)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert hostconfig.load(path, environ={}).address == "plone.example.org"


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    path = write(tmp_path)
    path.write_bytes(path.read_bytes().replace(b"plone.example.org", b"caf\xe9.example.org"))
    with pytest.raises(ConfigError, match=r"site.cfg: is not UTF-8 text"):
        hostconfig.load(path, environ={})


def test_a_directory_is_not_a_config(tmp_path):
    (tmp_path / "dir.cfg").mkdir()
    with pytest.raises(ConfigError, match=r"dir.cfg is a directory, not a host config file"):
        hostconfig.load(tmp_path / "dir.cfg", environ={})


def test_an_extended_directory_names_the_extending_file(tmp_path):
    (tmp_path / "base.cfg").mkdir()
    path = tmp_path / "site.cfg"
    path.write_text("[hostconfig]\nextends = base.cfg\n")
    with pytest.raises(ConfigError, match=r"site.cfg: \[hostconfig\] extends: .*base.cfg is a directory"):
        hostconfig.load(path, environ={})


def test_a_dotenv_that_is_not_text_is_named(tmp_path):
    (tmp_path / "hostconfigs").mkdir()
    (tmp_path / ".env").write_bytes(b"\xff\xfe\x00\x01binary")
    path = write(tmp_path / "hostconfigs")
    with pytest.raises(ConfigError, match=r"\.env: cannot be read as UTF-8 text"):
        hostconfig.load(path)


def test_a_dotenv_with_a_byte_order_mark_is_read(tmp_path, monkeypatch):
    monkeypatch.delenv("TOKEN", raising=False)
    (tmp_path / "hostconfigs").mkdir()
    (tmp_path / ".env").write_bytes(b"\xef\xbb\xbfTOKEN=s3cret\n")
    path = write(tmp_path / "hostconfigs", "notify", "webhook", "https://hooks.example/${env:TOKEN}")
    assert hostconfig.load(path).webhook == "https://hooks.example/s3cret"


@pytest.mark.parametrize("path", sorted((Path(__file__).parent.parent / "hostconfigs").glob("*.cfg")),
                         ids=lambda path: path.name)
def test_every_shipped_config_still_loads(path):
    if path.stem.startswith("base"):  # a base only: extended by the others, not a host of its own
        with pytest.raises(ConfigError, match=r"\[host\] address is required"):
            hostconfig.load(path, environ={"DEPLOY_WEBHOOK": "https://hooks.example/x"})
        return
    config = hostconfig.load(path, environ={"DEPLOY_WEBHOOK": "https://hooks.example/x"})
    assert config.root.startswith("/") and config.shared == ("var",)


@pytest.mark.parametrize("key, make, words", [
    ("identity", lambda d: d / "no-such-key", "no such key file"),
    ("known_hosts", lambda d: (d / "known").mkdir() or d / "known", "is a directory, not a file"),
])
def test_a_missing_key_or_a_known_hosts_directory_stops_before_connecting(tmp_path, key, make, words):
    import os
    import subprocess
    from sites import FAB, REPO
    (tmp_path / "hostconfigs").mkdir()
    write(tmp_path / "hostconfigs", "host", key, str(make(tmp_path)), name="clumsy.cfg")
    result = subprocess.run([FAB, "-H", "clumsy", "status"], cwd=REPO, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "DEPLOY_HOSTCONFIGS": str(tmp_path / "hostconfigs")})
    assert result.returncode == 2, result.stderr
    assert f"[host] {key} = " in result.stderr and words in result.stderr and "Traceback" not in result.stderr


SECRET = "Zq7-s3cret-Value"


@pytest.mark.parametrize("section, key, value, environ, words", [
    ("deploy", "health_timeout", "${env:T}", {"T": SECRET}, "is not a whole number"),
    ("deploy", "health_timeout", "${env:T}", {"T": "8640000"}, "at most 86400"),
    ("deploy", "keep_releases", "${env:T}", {"T": "0" * 6 + "70000"}, "at most 10000"),
    ("host", "port", "${env:T}", {"T": "70000"}, "is not a TCP port"),
    ("front", "domains", "${env:T}", {"T": "bad_" + SECRET}, "is not a hostname"),
    ("hooks", "after_switch", "echo '${env:T}", {"T": SECRET}, "close every quote"),
    ("program:instance1", "health_url", "http://127.0.0.1:${env:T}/", {"T": "8x81-" + SECRET}, "URL"),
    ("backup", "offsite", "${env:T}", {"T": f"ssh://backup@{SECRET}.example.org:99x/srv"}, "ssh://"),
    ("backup", "offsite", "ssh://backup@h.example.org/${env:T}", {"T": SECRET + "/../x"}, "absolute directory"),
    ("host", "swap", "${env:T}", {"T": SECRET}, "is not auto, off or a size"),
    ("notify", "webhook", "${env:T}", {"T": "https://hooks.example/" + SECRET + "\nX: 1"}, "line break"),
])
def test_a_config_error_names_the_key_and_never_shows_a_value_from_the_environment(tmp_path, section, key, value,
                                                                                  environ, words):
    path = write(tmp_path, section, key, value)
    with pytest.raises(ConfigError) as caught:
        hostconfig.load(path, environ=environ)
    message = str(caught.value)
    assert message.startswith(f"{path.resolve()}: [{section}] {key}:"), message
    assert words in message, message
    secret = environ["T"]
    assert secret not in message and SECRET not in message and "s3cret" not in message, message
    for part in ("70000", "8640000", "99x", "8x81"):
        assert part not in message or part not in secret, message


@pytest.mark.parametrize("text, lines", [("TOKEN=s3cret\nthis is not an assignment\n", "line 2"),
                                         ('A=1\nTOKEN="s3cret-unclosed\n', "line 2")])
def test_a_dotenv_line_that_cannot_be_read_is_named_with_its_file_and_not_shown(tmp_path, text, lines):
    (tmp_path / "hostconfigs").mkdir()
    (tmp_path / ".env").write_text(text)
    path = write(tmp_path / "hostconfigs")
    with pytest.raises(ConfigError) as caught:
        hostconfig.load(path)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / '.env'}: {lines}: not NAME=value"), message
    assert "s3cret" not in message
