"""Many sites on one host: their ports and names checked against each other, new sites from profiles."""
