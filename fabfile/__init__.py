"""Deploy, roll back and look after zc.buildout sites on SSH hosts: ``fab --list``."""
from invoke import Collection

from .tasks import data, deploy, front, host, releases, services, site

ns = Collection()
for module in (data, deploy, front, host, releases, services, site):
    for name, task in Collection.from_module(module).tasks.items():
        ns.add_task(task, name)
