"""Deploy, roll back and look after zc.buildout sites on SSH hosts: ``fab --list``."""
from invoke import Collection

from . import (backup, bootstrap, certificates, copydata, deploy, front, hostsites, push, releases, restore, schedule,
               services, sitecommands)

ns = Collection()
for module in (backup, bootstrap, certificates, copydata, deploy, front, hostsites, push, releases, restore, schedule,
               services, sitecommands):
    for name, task in Collection.from_module(module).tasks.items():
        ns.add_task(task, name)
