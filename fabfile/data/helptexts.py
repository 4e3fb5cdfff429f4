"""The help of the backup and restore tasks' options, shared by ``fab`` and ``invoke`` (read when the
task list is built, so it imports nothing)."""

BACKUP_HELP = {"full": "a full backup, not an incremental one",
               "snapshot": "a full backup kept apart from the regular ones",
               "zip": "one full backup with the blobs as one archive, kept apart (zipbackup)",
               "quiet": "print nothing unless something fails (for cron)"}

RESTORE_HELP = {"date": "the UTC time to restore, yyyy-mm-dd[-hh[-mm[-ss]]]; none (or latest): the newest",
                "snapshot": "restore from the snapshots", "zip": "restore the zip backup (backup --zip)",
                "from": "offsite: fetch the backups from [backup] offsite, check them, restore from them; "
                        "or DIR on the host, a copy of the backups (altrestore)",
                "alternative": "restore from [backup] alternative_restore_source (altrestore)",
                "no_prompt": "do not ask for yes first"}
