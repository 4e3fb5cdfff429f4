"""The backup engine, standard library only: shipped whole to the host for the backup job (repozo, blobs, retention, offsite)."""
