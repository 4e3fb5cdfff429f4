"""Where this checkout keeps things: its root, the example site, the profiles, the local cache."""
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
CACHE = PROJECT / ".cache"          # downloaded distributions, remote extends, the hosts' platforms
EXAMPLE = PROJECT / "example"       # the embedded demo site
PROFILES = PROJECT / "profiles"     # the layouts new-site starts from
