"""What each host config key means and what it defaults to, beside ``schema.SCHEMA``.

The configuration reference (``docs/reference/configuration.md``) is made from ``SCHEMA``
(the keys and kinds the loader checks) and from ``KEYS`` below (a default and one line of
meaning per key), when the docs are built; ``tests/test_docs.py`` holds the two together.
collective.recipe.backup's own names (``crb.OPTIONS``) carry their default and meaning there.
Nothing here is read by the loader.
"""
from __future__ import annotations

# kind (schema.SCHEMA's values) -> what a value of it must be
KINDS: dict[str, str] = {
    "str": "text, one line",
    "int": "a whole number",
    "count": "a whole number, 0 to 10000",
    "positive": "a whole number, 1 to 10000",
    "seconds": "a number of seconds, 0 to 86400 (a day)",
    "timeout": "a number of seconds, 1 to 86400 (a day)",
    "days": "a number of days, 0 to 36500",
    "port": "a TCP port, 1-65535",
    "ports": "TCP ports, separated by spaces",
    "bool": "true or false (yes/no, on/off, 1/0)",
    "list": "words separated by spaces (or lines)",
    "names": "program names (letters, digits, _ . -), separated by spaces",
    "root": "an absolute directory on the host, without spaces, quotes, $ or ..; not / or a system directory",
    "localpath": "a path on this machine, relative to the config file",
    "address": "a hostname, an IPv4 or an IPv6 address",
    "user": "a POSIX user name",
    "python": "a command (python3.11) or an absolute path",
    "command": "a command line, split into words as the shell does",
    "hook": "one shell command line",
    "url": "an http:// or https:// URL with a host",
    "swap": "auto, off, or a size (512M, 2G)",
    "schedule": "hourly, daily, weekly, monthly, or five cron fields",
    "release_paths": "paths relative to the release, separated by spaces",
    "var_path": "a path relative to <root>/var (or absolute)",
    "var_paths": "name, name:path or name:path:blobdir words (or CRB's lines)",
    "backup_path": "a path relative to <root>/backups (or absolute)",
    "site_path": "a path relative to <root> (or absolute)",
    "rsync_options": "rsync options (no paths, none that deletes or links)",
    "alternative": "one line: Data FSBACKUPS [BLOBBACKUPS]",
    "offsite_url": "ssh://user@host[:port]/path (sftp:// alike)",
    "host_path": "an absolute path on the host",
    "crb": "collective.recipe.backup's syntax for this option",
}

# section -> {key: (default, meaning)}; "" as default: none. "*" is any key of that form.
KEYS: dict[str, dict[str, tuple[str, str]]] = {
    "hostconfig": {
        "extends": ("", "base configs this one layers on, like buildout's extends: the bases first, later wins"),
    },
    "host": {
        "address": ("required", "where to connect"),
        "port": ("22", "SSH port"),
        "user": ("you", "who deploys (owns code)"),
        "app_user": ("`user`", "who runs the processes (owns data)"),
        "root_user": ("root", "for `bootstrap-host`"),
        "root": ("required", "the site's home on the host: absolute, without spaces, quotes or `$` (buildout "
                             "and Zope write it into `#!` lines, Python strings and ZConfig files)"),
        "identity": ("`~/.ssh/id_ed25519`, else `~/.ssh/id_rsa`, else `.deploy-keys/id_ed25519`",
                     "private key file, relative to the config file: every login uses it, `bootstrap-host` "
                     "authorizes its `.pub` (see \"The deploy key\")"),
        "known_hosts": ("`known_hosts` beside the config", "the host keys checked on every connection"),
        "packages": ("", "more apt packages for `bootstrap-host`"),
        "harden": ("false", "`bootstrap-host` turns off password and root logins in sshd, after checking that "
                            "`user` logs in with the key"),
        "store": ("", "an absolute directory on the host whose `dists/` and `eggs/` the sites deployed by `user` "
                      "share (instead of `<root>/dists` and `<root>/eggs`): a site's first deploy uploads only "
                      "what the host lacks, an egg used by five sites takes the disk of one (buildout installs "
                      "into a shared eggs directory safely when two build at once); `bootstrap-host` makes it "
                      "(0750, `user`'s group, which each `app_user` joins)"),
        "firewall": ("true", "`bootstrap-host` loads an nftables table that lets in SSH, the front's ports and "
                             "`firewall_ports` only (see \"A VPS fit to live on\")"),
        "firewall_ports": ("", "more TCP ports the firewall lets in (a ZEO server other hosts reach, say)"),
        "security_upgrades": ("true", "`bootstrap-host` installs `unattended-upgrades` and turns on its daily run"),
        "swap": ("auto", "`auto`: a swap file when the host has under 2 GiB of memory and no swap; a size "
                         "(`512M`, `2G`): one of that size when it has no swap; `off`"),
        "private_address": ("`address`", "a fleet: where the other hosts reach this one (`${host:private_address}`)"),
    },
    "host:*": {
        "roles": ("", "a fleet: the host's roles, `zeo`, `backup`, `app`, `front` (and every `[host]` key, "
                      "for this host)"),
    },
    "buildout": {
        "directory": ("required", "the local buildout, relative to the config file"),
        "config": ("production.cfg", "the profile the host runs (no `develop`, every version pinned)"),
        "development": ("development.cfg", "the profile whose `develop =` eggs are released"),
        "python": ("python3", "the host's Python"),
        "shared": ("var", "paths linked from every release to `<root>/<path>`"),
        "index": ("`<root>/dists`", "a package index (a private one, say) for hosts that download themselves: "
                                    "only our eggs and the venv's tools are pushed, buildout takes the rest "
                                    "from the index"),
    },
    "services": {
        "manager": ("supervisor", "`supervisor` (in `<root>/venv`, its config in each release) or `systemd` "
                                  "(units from `bootstrap-host`)"),
        "programs": ("none", "started in this order, stopped in reverse"),
    },
    "program:*": {
        "command": ("`bin/NAME`", "relative to the release"),
        "health_url": ("", "polled on the host after a start; must answer 2xx/3xx (http or https)"),
        "address": ("the health URL's host:port", "where the front reaches this instance"),
        "green_address": ("", "bluegreen: host:port of the green twin (its health URL is the same URL there)"),
    },
    "deploy": {
        "keep_releases": ("5", "built releases cleanup keeps (plus current and the previous good one)"),
        "health_timeout": ("60", "seconds to wait for every health URL"),
        "min_uptime": ("3", "seconds a started program must keep its pid before its start counts (a crash loop "
                            "never does); at most `health_timeout`"),
        "allow_dirty": ("true", "`false` forbids `--allow-dirty`: the host takes committed code only"),
        "switch": ("`rolling` with a `[front]`, else `stopstart`",
                   "`rolling`, `bluegreen` (supervisor, needs `[green]` and `green_address`) or `stopstart`"),
    },
    "front": {
        "server": ("haproxy", "`haproxy` or `nginx` (for sites that already run it)"),
        "domains": ("", "the public names: certificate, virtual hosting, redirects; under `control = systemd` the "
                        "names the host's front routes to this site (none: every name no other site claims), "
                        "one site each; hostnames, each once (an IP address only with `tls = off`)"),
        "tls": ("off", "`acme` (lego, HTTP-01), `internal` (a certificate made on the host) or `off`"),
        "email": ("", "the ACME account's address (required with `tls = acme`)"),
        "acme_directory": ("Let's Encrypt's", "the ACME CA's directory URL"),
        "acme_ca_bundle": ("", "a CA file (this side) that the ACME server's own certificate is checked against"),
        "acme_port": ("8402", "where lego answers HTTP-01 behind the front (127.0.0.1)"),
        "site_path": ("", "Zope virtual hosting: the object the domains show (`/Plone`, `/`); none: no rewriting"),
        "instances": ("programs with a `health_url`", "the programs the front balances"),
        "bind": ("*", "the address the front listens on (under `control = systemd`: the same for every site on "
                      "the host)"),
        "http_port": ("80", "must not be an instance's port"),
        "https_port": ("443", "must not be an instance's port"),
        "hsts": ("false", "`Strict-Transport-Security` on HTTPS answers"),
        "control": ("systemd", "`systemd` (Debian's haproxy.service, set up by `bootstrap-host`, shared by the "
                               "host's sites) or `self` (run as the deploy login, one per site)"),
        "drain_timeout": ("30", "seconds to wait for an instance's requests in flight before stopping it"),
        "retry_after": ("30", "the maintenance page's `Retry-After`"),
        "keep_warm": ("300", "bluegreen: seconds the old set keeps running after a flip"),
        "admin_port": ("9999", "a fleet's front: the TCP port of its runtime API on `private_address`, for the "
                               "app hosts' switches"),
    },
    "green": {
        "*": ("", "bluegreen: buildout options (`section:option`) of a release built as the green set "
                  "(`ports:instance1 = 18081`); refused with any other switch"),
    },
    "backup": {
        "keep": ("2", "full backups kept with their incrementals (`0`: all)"),
        "keep_blob_days": ("14", "days of blob copies kept, for a site with blobs only"),
        "before_deploy": ("true", "back up before the switch, tagged with the leaving release"),
        "filestorage": ("filestorage/Data.fs", "relative to `<root>/var`"),
        "blobstorage": ("blobstorage", "relative to `<root>/var`; empty: no blobs"),
        "additional_filestorages": ("", "more filestorages, each backed up first: `name`, `name:path` or "
                                        "`name:path:blobdir` words, or CRB's lines `name [datafs [blobdir]]` (a "
                                        "blobdir: that storage's own blobstorage)"),
        "location": ("under `<root>/backups`", "where the filestorage backups go; all locations must differ, none in a "
                                               "system directory or inside the data they back up"),
        "blob_location": ("under `<root>/backups`", "where the blob backups go; all locations must differ"),
        "snapshot_location": ("under `<root>/backups`", "where the snapshots go; all locations must differ"),
        "blob_snapshot_location": ("under `<root>/backups`", "where the snapshots' blobs go; all locations must "
                                                             "differ"),
        "zip_location": ("under `<root>/backups`", "where `backup --zip` puts its filestorage backup; all "
                                                   "locations must differ"),
        "blob_zip_location": ("under `<root>/backups`", "where `backup --zip` puts its blob archive; all "
                                                        "locations must differ"),
        "locationprefix": ("backups", "relative to `<root>` (or absolute): where the backups and their records "
                                      "and lock go"),
        "only_blobs": ("false", "back up the blobstorages only"),
        "debug": ("false", "repozo `--verbose`"),
        "full": ("false", "every backup a full one"),
        "incremental_blobs": ("false", "with `blob_archive`: an incremental backup's archive holds only what "
                                       "changed (see \"Blob archives\")"),
        "use_rsync": ("true", "`false`: `cp -a` instead of rsync"),
        "rsync_options": ("", "more rsync options (no paths, none that deletes or links)"),
        "rsync_hard_links_on_first_copy": ("false", "the first copy hard-links the live blobs"),
        "enable_snapshotrestore": ("true", "`false`: `restore --snapshot` refused"),
        "enable_zipbackup": ("true", "`false`: `backup --zip`, `restore --zip` refused"),
        "alternative_restore_source": ("", "`Data FSBACKUPS [BLOBBACKUPS]`: where `restore --alternative` takes "
                                           "the backups from"),
        "pre_command": ("", "run before a backup (failing stops it)"),
        "post_command": ("", "run after a backup"),
        "quick": ("true", "repozo's `--quick`"),
        "gzip": ("true", "repozo's `--gzip`"),
        "verify": ("full", "`full`: open full backups with ZODB, check the files incrementals add as "
                           "`repozo -V` does; `always`: open every backup; `repozo`: the `-V` check only"),
        "blob_archive": ("", "`tar` or `tar.gz`: one archive per backup instead of hard-linked copies"),
        "schedule_incremental": ("", "`hourly`, `daily`, `weekly`, `monthly` or five cron fields: cron lines "
                                     "in the deploy login's crontab"),
        "schedule_full": ("", "`hourly`, `daily`, `weekly`, `monthly` or five cron fields: cron lines in the "
                              "deploy login's crontab"),
        "zeopack_before_full": ("false", "pack before each scheduled full backup"),
        "pack_days": ("7", "days of history the pack keeps (`zeopack -d`)"),
        "zeopack": ("bin/zeopack", "the pack command, relative to the release; arguments allowed"),
        "offsite": ("", "`ssh://user@host[:port]/path` (`sftp://` alike): every verified backup copied there "
                        "with rsync over SSH (see \"Offsite copies\")"),
        "offsite_identity": ("ssh's own keys", "the private key, a path on the host, that logs in to the offsite "
                                               "host (may come from `.env`: `${env:OFFSITE_KEY}`)"),
        "offsite_known_hosts": ("ssh's own files", "a known_hosts file on the host holding the offsite host's "
                                                   "key; it is always checked"),
    },
    "notify": {
        "webhook": ("", "JSON POST on start, success and failure: event, host, release, who, duration, error"),
        "syslog": ("", "a facility (`local3`, `user`, `daemon`, `local0`-`local7`): `logger` lines on the host "
                       "for deploys and backups; with supervisor, every program line too (see \"Logs\")"),
    },
    "hooks": {
        "before_deploy": ("", "a shell command line run here in the buildout directory before anything is sent "
                              "(see \"Hooks\")"),
        "before_switch": ("", "run on the host in the new release before the switch; failing marks it bad"),
        "after_switch": ("", "run on the host in `current` after the health checks; failing goes back"),
        "after_rollback": ("", "run on the host in `current` after a rollback, an automatic one too"),
        "hook_timeout": ("600", "seconds a hook may run before it is stopped (and fails)"),
    },
    "overrides": {
        "*": ("", "buildout options (`section:option`) set in the host's `deploy.cfg` (ports per stage, say); "
                  "one holding a secret goes to `<root>/secrets.cfg` (0600) instead"),
    },
    "fleet": {
        "hosts": ("", "the fleet's hosts (names: letters, digits, _ -), each a `[host:NAME]`, in the order the locks "
                      "are taken in"),
        "parallel": ("10", "SSH sessions at once"),
        "batch": ("1", "app hosts switched at once: 1, a number, or a share (`50%`)"),
    },
    "role:*": {
        "programs": ("", "the programs a host of this role runs (`[role:zeo]`: the ZEO server, `[role:app]`: the "
                         "ZEO clients)"),
        "port": ("", "`[role:zeo]`: the ZEO port, which the firewall lets in from the app hosts only"),
    },
}
