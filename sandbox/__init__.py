"""The local sandbox host: an OpenSSH server on 127.0.0.1 for demos and tests."""
