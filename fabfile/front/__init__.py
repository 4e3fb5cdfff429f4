"""The web server in front of the instances: HAProxy or nginx config, drain, maintenance, certificates."""
