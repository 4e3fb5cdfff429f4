"""The deploy chain over a hostconfig's hosts: prepare, push, build, switch, record; rollback and cleanup."""
