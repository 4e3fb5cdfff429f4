"""What ``fab`` runs: thin tasks that read the arguments, pick the host or the fleet's hosts, and call below."""
