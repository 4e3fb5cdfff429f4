"""The site's data from this side: backups, restores, copies between sites, the schedule, the on-host data job."""
