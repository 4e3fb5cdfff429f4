"""Install a release's distributions into the shared eggs directory, in parallel, then run buildout.

Usage: VENV_PYTHON -c SOURCE EGGS_DIRECTORY VERSION DISTS_DIRECTORY MANIFEST -- BUILDOUT ARGS...

VERSION is the profile's ``eggs-directory-version`` (``-``: not set, buildout's default), the
subdirectory of EGGS_DIRECTORY that buildout 5 and later install into.

Buildout installs every distribution its eggs directory lacks one after another, each by a
``pip install --no-deps -t`` of its own (a Python start per distribution). This does the same
install with zc.buildout's own code, each in a child forked from this process (pip and zc.buildout
loaded once), one per core at a time: ``pip install --no-deps -t TMP FILE``, then
``make_egg_after_pip_install``, then the egg moved into the eggs directory with one rename, as
zc.buildout's ``_move_to_eggs_dir_and_compile`` does.
Buildout then finds every egg installed and only resolves and writes scripts; this process
becomes buildout (exec), so its pid file and its exit status stay buildout's.

Only the release's own distributions (its manifest) that neither the eggs directory nor this
venv (buildout's tools) holds are installed, and only from files in DISTS_DIRECTORY whose sha256 is
the one the push recorded in its ``SHA256SUMS`` and the manifest's: any other stops the build
before buildout starts. An egg
is made in a hidden directory (buildout does not read dot-names) and appears whole or not at
all: an interrupted install leaves no egg that a later build would trust.
"""
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time

eggs, version, dists, manifest = sys.argv[1:5]
buildout = sys.argv[sys.argv.index("--") + 1:]
WORK_PREFIX = ".installing-"


def installs_like_this():
    """Whether this venv's zc.buildout installs a wheel as this script does: ``pip install -t`` and
    ``make_egg_after_pip_install`` (zc.buildout 5 and later); an older one is left to do it itself."""
    try:
        from zc.buildout import easy_install
        from zc.buildout.buildout import _buildout_default_options
    except ImportError:
        return False
    return (hasattr(easy_install, "make_egg_after_pip_install") and ".whl" not in easy_install.UNPACKERS
            and "eggs-directory-version" in _buildout_default_options)


def recorded_sums():
    """``dists/SHA256SUMS`` as the push appends it: the last line for a name wins."""
    try:
        with open(os.path.join(dists, "SHA256SUMS")) as handle:
            return dict(reversed(line.split(None, 1)) for line in handle.read().splitlines() if line.strip())
    except FileNotFoundError:
        return {}


def identify(filename):
    """``(canonical name, version)`` of a wheel or sdist file name, else None."""
    from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
    try:
        if filename.endswith(".whl"):
            name, version = parse_wheel_filename(filename)[:2]
        elif filename.endswith((".tar.gz", ".zip")):
            name, version = parse_sdist_filename(filename)
        else:
            return None
    except ValueError:  # packaging's Invalid*Filename and InvalidVersion
        return None
    return canonicalize_name(name), version


def installed():
    """``(canonical name, version)`` of every distribution buildout finds without installing it: the
    eggs in the eggs directory, and what this venv holds (buildout's own working set: its tools)."""
    from importlib import metadata
    import pkg_resources
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version
    found = [(dist.metadata["Name"], dist.version) for dist in metadata.distributions()]
    for entry in os.listdir(eggs):
        if not entry.startswith(".") and entry.endswith(".egg"):
            dist = pkg_resources.Distribution.from_filename(entry)
            found.append((dist.project_name, dist.version))
    have = set()
    for name, version in found:
        try:
            have.add((canonicalize_name(name or ""), Version(version)))
        except InvalidVersion:
            continue
    return have


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def install(job):
    """One distribution into the eggs directory, as buildout installs it; (file, egg or None, error)."""
    name, wanted = job
    path = os.path.join(dists, name)
    if sha256(path) != wanted:
        return name, None, f"{path} does not match its sha256 in SHA256SUMS and the release's manifest"
    from pip._internal.cli.main import main as pip
    from zc.buildout.easy_install import make_egg_after_pip_install
    work = tempfile.mkdtemp(prefix=WORK_PREFIX, dir=eggs)
    try:
        sys.stdout = sys.stderr  # pip's messages, not ours
        if pip(["install", "--no-deps", "-t", work, "-q", path]):
            return name, None, f"pip install of {path} failed"
        infos = [entry for entry in os.listdir(work) if entry.endswith(".dist-info")]
        if len(infos) != 1:
            return name, None, f"pip install of {path} made {len(infos)} .dist-info directories"
        [made] = make_egg_after_pip_install(work, infos[0])
        egg = os.path.join(eggs, os.path.basename(made))
        try:
            os.rename(made, egg)
        except OSError:
            if not os.path.isdir(egg):  # another build put the same egg there first: take it, as buildout does
                raise
        return name, os.path.basename(egg), None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def in_parallel(jobs, processes):
    """``install`` each job in a child forked for it from this process, pip and buildout loaded once
    before (pip's own advice: one install per process), ``processes`` at a time; yields each result.
    The first error starts no more; a SIGTERM (the build stopped) stops the running ones at once."""
    import zc.buildout.easy_install  # noqa: F401 -- first: setuptools sets up distutils before pip imports it
    import pip._internal.cli.main  # noqa: F401
    running, waiting = {}, list(jobs)

    def stop(*_):
        for child in running:
            try:
                os.kill(child, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, lambda *_: (stop(), os._exit(143)))
    failed = False
    while waiting or running:
        while waiting and len(running) < processes and not failed:
            job = waiting.pop(0)
            results_out, results_in = os.pipe()
            child = os.fork()
            if child == 0:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.close(results_out)
                try:
                    result = install(job)
                except BaseException as error:  # reported: the build fails on it
                    result = (job[0], None, f"{job[0]}: {error!r}")
                os.write(results_in, json.dumps(result).encode())
                os._exit(0)
            os.close(results_in)
            running[child] = (job, results_out)
        if not running:
            return
        child, status = os.wait()
        job, results_out = running.pop(child)
        with os.fdopen(results_out, "rb") as results:
            report = results.read()
        name, egg, error = json.loads(report) if report else (job[0], None, f"{job[0]}: install ended ({status})")
        failed = failed or bool(error)
        yield name, egg, error


def main():
    global eggs
    started = time.monotonic()
    if not installs_like_this():
        os.execv(buildout[0], buildout)
    if version == "-":
        from zc.buildout.buildout import _buildout_default_options
        eggs = os.path.join(eggs, _buildout_default_options["eggs-directory-version"].value)
    elif version:
        eggs = os.path.join(eggs, version)
    with open(manifest) as handle:
        release = json.load(handle)
    sums = recorded_sums()
    os.makedirs(eggs, exist_ok=True)
    have = installed()
    jobs, refused = [], []
    for name, digest in sorted(release.get("dists", {}).items()):
        key = identify(name)
        if key is None or key in have or not os.path.isfile(os.path.join(dists, name)):
            continue  # an egg already, in the venv, or not here (an index serves it): buildout's
        if sums.get(name) != digest:
            refused.append(f"{name}: the sha256 SHA256SUMS records is not the release's")
            continue
        have.add(key)  # one file per distribution
        jobs.append((name, digest))
    jobs.sort(key=lambda job: -os.path.getsize(os.path.join(dists, job[0])))  # the largest first
    made, processes = [], min(len(jobs), os.cpu_count() or 1)
    if jobs and not refused:
        for name, egg, error in in_parallel(jobs, processes):
            if error:
                refused.append(error)
            else:
                made.append(egg)
    if refused:
        print("eggs: nothing more installed, buildout not run:\n  " + "\n  ".join(refused), file=sys.stderr)
        sys.exit(1)
    print(f"eggs: {len(made)} installed in {time.monotonic() - started:.1f}s ({processes} processes), "
          f"{len(release.get('dists', {})) - len(made)} already there or left to buildout", flush=True)
    sys.stderr.flush()
    os.execv(buildout[0], buildout)


main()
